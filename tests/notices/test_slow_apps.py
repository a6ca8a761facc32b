"""An app that hangs (takes the request, never answers) against the delivery worker, with
real PostgreSQL and real HTTP receivers: another app's notices are not held behind it,
and the hung app's are sent again, with the same event ids, once it answers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from hub.core import db
from hub.core.settings import Settings
from resolvers.notices import choices, delivery, store
from resolvers.notices import webhooks as hooks
from resolvers.notices.settings import NoticesSettings
from tests.notices.receiver import Receiver, receiving

FINE = {"reason": "주정차 위반", "amount": 40_000, "due_date": "2026-12-31"}
TIMEOUT = 10.0  # of one webhook request: the hung app's first requests last this long
CITIZENS, NOTICES = 3, 2  # per app; each citizen's second notice waits for their first


@pytest.fixture(scope="module")
async def pool(migrated_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(migrated_url, Settings.from_env())
    yield pool
    await pool.close()


async def app_of(
    pool: asyncpg.Pool, receiver: Receiver, max_batch: int
) -> tuple[str, dict[str, list[str]]]:
    """An app with its webhook and citizens who chose fines; each citizen's notices, in
    the order they were published."""
    client_id = f"app-{uuid.uuid4().hex[:8]}"
    hook = await hooks.register(pool, client_id, receiver.url, "k", max_batch=max_batch)
    receiver.secrets.append(hook.secret)
    citizens = [uuid.uuid4() for _ in range(CITIZENS)]
    published: dict[str, list[str]] = {str(c): [] for c in citizens}
    for citizen in citizens:
        await choices.opt_in(pool, citizen, client_id, ["fine_issued"])
    for _ in range(NOTICES):
        for citizen in citizens:
            accepted = await store.publish(
                pool,
                store.NewNotice.from_agency(
                    "city", uuid.uuid4().hex, type_code="fine_issued", user_id=citizen, params=FINE
                ),
                store.QuietHours(0, 24),
            )
            published[str(citizen)].append(str(accepted.notice.notice_id))
    return client_id, published


async def deliveries(pool: asyncpg.Pool, client_id: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT event_id::text, status, attempts, last_error FROM notice_deliveries"
        " WHERE client_id = $1 ORDER BY delivery_id",
        client_id,
    )


async def all_delivered(pool: asyncpg.Pool, client_id: str) -> bool:
    return all(r["status"] == "delivered" for r in await deliveries(pool, client_id))


async def until(condition: Callable[[], Awaitable[bool]], seconds: float = 60) -> None:
    async with asyncio.timeout(seconds):
        while True:
            if await condition():
                return
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("max_batch", [1, 50])
async def test_a_hung_app_holds_neither_a_lane_nor_other_apps_and_loses_nothing(
    pool: asyncpg.Pool, migrated_url: str, max_batch: int
) -> None:
    async with receiving() as hung, receiving() as answering:
        hung.hanging = True
        slow_app, slow_notices = await app_of(pool, hung, max_batch)
        _, fast_notices = await app_of(pool, answering, max_batch)
        section = NoticesSettings(
            webhook_timeout_seconds=TIMEOUT,
            lease_seconds=TIMEOUT * 10,
            first_retry_seconds=0.05,
            longest_retry_seconds=0.2,
            lanes=1,  # one lane: a hang that held it would hold everything
        )
        deliverer = delivery.Deliverer(pool, section)
        stop = asyncio.Event()
        running = asyncio.create_task(deliverer.run(stop, migrated_url, Settings.from_env()))
        try:
            await until(lambda: asyncio.sleep(0, len(answering.received) == CITIZENS * NOTICES))
            # Every notice of the answering app, second ones included (each claimable only
            # once the first was settled), while the hung app's first requests still hang.
            for citizen, notices in fast_notices.items():
                assert [r["noticeId"] for r in answering.of(citizen)] == notices
            assert hung.hung and hung.received == []
            pending = await deliveries(pool, slow_app)
            assert {(r["status"], r["last_error"]) for r in pending} == {("pending", None)}

            hung.hanging = False  # the app answers again; the hung requests time out
            await until(lambda: all_delivered(pool, slow_app))
        finally:
            stop.set()
            await running
    settled = await deliveries(pool, slow_app)
    first_sent = set(hung.hung)
    assert first_sent <= {r["event_id"] for r in settled}  # the same event ids, sent again
    for citizen, notices in slow_notices.items():
        assert [r["noticeId"] for r in hung.of(citizen)] == notices  # all, in order
    assert all(r["attempts"] >= 2 for r in settled if r["event_id"] in first_sent)
    assert answering.repeats == 0 and not answering.refused and not hung.refused
