"""A bill issued in the tax system reaches its payer's app as a tax-due notice, end to end:
the payments worker reads the sandbox tax system's feed of issued bills over HTTP,
announces each bill on the payments events topic (bill.created, through its outbox), and
the notices worker makes the notice for the citizen who linked the payer's identity, at
the webhook of the app they chose, once: across a restart of the payments worker between
two bills, and however many times the feed is read."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from resolvers.notices import citizens
from resolvers.payments.bill_feed import BILL_CREATED
from schema.notices.runtime import WORKER as NOTICES
from schema.payments.runtime import WORKER as PAYMENTS
from tests.notices.helpers import App
from tests.notices.helpers import World as Notices
from tests.payments.helpers import World, payments_world

pytestmark = pytest.mark.db

LINKING_KEY = "ieum-test-linking-key"
DUE = "2026-12-31"


@pytest.fixture(scope="module")
async def world(migrated_url: str, kafka_bootstrap: str) -> AsyncIterator[tuple[World, Notices]]:
    """The hub with the notices worker (the payments worker is started by the test), on a
    payments topic and a notices consumer group of this module's own."""
    tag = uuid.uuid4().hex[:8]
    async with payments_world(
        migrated_url,
        kafka_bootstrap,
        events_topic=f"test.payments.{tag}",
        events_group=f"test-notices-{tag}",
        linking_key=LINKING_KEY,
        day_starts_hour=0,  # no quiet hours: the notices go whenever the test runs
        day_ends_hour=24,
        first_retry_seconds=0.05,
        longest_retry_seconds=0.2,
    ) as hub:
        notices = Notices(hub.url, hub.pool, hub.settings, hub.clients)
        stop = asyncio.Event()
        worker = asyncio.create_task(NOTICES.run(hub.settings, hub.servers, stop))
        try:
            async with notices.stack:
                yield hub, notices
        finally:
            stop.set()
            await worker


@asynccontextmanager
async def payments_worker(hub: World) -> AsyncIterator[None]:
    """`ieum worker payments` (feed, outbox relay …) until the block ends."""
    stop = asyncio.Event()
    running = asyncio.create_task(PAYMENTS.run(hub.settings, hub.servers, stop))
    try:
        yield
    finally:
        stop.set()
        await running


async def received(app: App, citizen: str, count: int, seconds: float = 30) -> list[dict[str, Any]]:
    """The first `count` notices the app's receiver accepted for the citizen."""
    async with asyncio.timeout(seconds):
        while len(got := app.receiver.of(citizen)) < count:  # noqa: ASYNC110 (a receiver's list)
            await asyncio.sleep(0.05)
    return got


async def test_a_bill_issued_reaches_its_payers_app_once_across_a_worker_restart(
    world: tuple[World, Notices],
) -> None:
    hub, notices = world
    app = await notices.app()
    citizen = await notices.citizen(app)
    ci = f"TEST-CI-{uuid.uuid4().hex}"
    await notices.data(citizen.token, "mutation($c: String!) { linkNoticeIdentity(ci: $c) }", c=ci)
    await notices.data(
        citizen.token, 'mutation { optInNotices(types: ["tax_due"]) { noticeType } }'
    )
    payer = citizens.ref_of(ci, LINKING_KEY.encode())

    async with payments_worker(hub):
        [first] = await hub.bills(payer_ref=payer, item_code="11", amount=120_000, due_date=DUE)
        [nobody] = await hub.bills()  # the tax system knows no CI of this payer
        [paid] = await hub.bills(payer_ref=payer, paid_by="bank")  # paid before it was read
        [got] = await received(app, citizen.user_id, 1)
    [second] = await hub.bills(payer_ref=payer, item_code="10", amount=300_000, due_date=DUE)
    async with payments_worker(hub):  # goes on from the last bill it announced
        got_first, got_second = await received(app, citizen.user_id, 2)

    assert got_first == got
    assert got["noticeType"] == "tax_due" and got["citizen"] == citizen.user_id
    assert got["body"]["ko"] == f"자동차세 120,000원의 납부기한은 {DUE}입니다."
    assert got["payment"] == {"amount": 120_000, "epayNo": first, "dueDate": DUE}
    assert got_second["payment"] == {"amount": 300_000, "epayNo": second, "dueDate": DUE}
    announced = await hub.pool.fetch(
        "SELECT key, count(*) FROM payment_outbox WHERE event_type = $1 AND key = ANY($2)"
        " GROUP BY key",
        BILL_CREATED,
        [first, nobody, paid, second],
    )
    assert dict(announced) == dict.fromkeys([first, nobody, paid, second], 1)  # each once
    await notices.settled()
    assert app.receiver.repeats == 0 and not app.receiver.refused
    assert len(app.receiver.received) == 2
