"""Notices from booked trains, end to end: a citizen books a KTX through an app (the
operator's and the gateway's sandboxes over HTTP) and chooses train notices in it; the
operator announces a delay, then cancels the train; the mobility worker's check stores
each change (and refunds the cancelled ticket in full), the sources worker makes the
notices and the notices worker delivers them to that app's webhook, checked with the
verifier apps copy. A citizen who did not choose them hears nothing."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from resolvers.mobility.settings import MobilitySettings
from resolvers.notices import signing
from resolvers.notices.quiet import KST
from schema.mobility import booking as flow
from schema.mobility.state import adapters_of, state_of_process
from schema.notices.runtime import WORKER as NOTICES
from schema.notices.source_polls import WORKER as SOURCES
from tests.mobility.helpers import BUSAN_HAEUNDAE, SEOUL_CITY_HALL, MobilityWorld, mobility_world
from tests.notices.helpers import App
from tests.notices.helpers import World as Notices
from tests.notices.receiver import receiving
from tests.notices.test_sources import received
from tests.oauth import REDIRECT

pytestmark = pytest.mark.db

SCOPES = "mobility:book mobility:plan notices:receive"
TRAINS = """query($from: PlaceInput!, $to: PlaceInput!, $after: DateTime) {
  journeys(from: $from, to: $to, departAfter: $after, limit: 1) {
    itineraries { train { trainNo runDate from { code } to { code } } } } }"""
OPT_IN = "mutation($t: [String!]!) { optInNotices(types: $t) { noticeType } }"
BOOKING = """query($i: UUID!) { booking(id: $i) {
  status delayMinutes trainCancelled amount refundedAmount } }"""


@dataclass
class Trains:
    mobility: MobilityWorld  # the hub over HTTP with the rail and gateway sandboxes
    notices: Notices  # webhook receivers


@pytest.fixture(scope="module")
async def world(migrated_url: str, kafka_bootstrap: str) -> AsyncIterator[Trains]:
    """The hub with its notices and sources workers (no quiet hours)."""
    tag = uuid.uuid4().hex[:8]
    async with mobility_world(
        migrated_url,
        kafka_bootstrap,
        events_topic=f"test.payments.{tag}",
        events_group=f"test-notices-{tag}",
        day_starts_hour=0,
        day_ends_hour=24,
        first_retry_seconds=0.05,
        longest_retry_seconds=0.2,
    ) as mobility:
        hub = mobility.hub
        notices = Notices(hub.url, hub.pool, hub.settings, hub.clients)
        stop = asyncio.Event()
        workers = [
            asyncio.create_task(worker.run(hub.settings, hub.servers, stop))
            for worker in (NOTICES, SOURCES)
        ]
        try:
            async with notices.stack:
                yield Trains(mobility, notices)
        finally:
            stop.set()
            await asyncio.gather(*workers)


@pytest.fixture
async def checker(world: Trains) -> AsyncIterator[flow.Booker]:
    """The mobility worker's flow, asking about every booked train of the next four days
    at each round."""
    hub = world.mobility.hub
    section = hub.settings.section(MobilitySettings).model_copy(
        update={"train_check_hours": 96, "train_check_seconds": 0.001}
    )
    async with adapters_of(section) as adapters, hub.flow() as payments:
        yield flow.Booker(hub.pool, state_of_process(section, adapters), payments)


async def booking_app(world: Trains) -> App:
    """A travel app that books trains and receives its citizens' notices at a webhook."""
    hub, notices = world.mobility.hub, world.notices
    made = await hub.clients.client(
        name="기차 앱", scope_names=f"{SCOPES} notices:deliver", redirect_uris=[REDIRECT]
    )
    secret = made.client_secret or ""
    token = await notices.client_token(made.client_id, secret, "notices:deliver")
    receiver = await notices.stack.enter_async_context(receiving())
    registered = await notices.data(
        token,
        "mutation($u: String!, $k: String!) {"
        " registerNoticeWebhook(url: $u, idempotencyKey: $k) { secret } }",
        u=receiver.url,
        k=str(uuid.uuid4()),
    )
    receiver.secrets.append(signing.key_of(registered["registerNoticeWebhook"]["secret"]))
    return App(made.client_id, secret, token, receiver)


def subject(token: str) -> str:
    payload = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"])


async def ticket(world: Trains, token: str, train: dict[str, Any]) -> dict[str, Any]:
    held = await world.mobility.hold(token, train, str(uuid.uuid4()))
    assert "errors" not in held, held
    paid = await world.mobility.pay(token, held["data"]["holdSeats"], str(uuid.uuid4()))
    assert "errors" not in paid, paid
    return dict(paid["data"]["payBooking"])


async def announce(world: Trains, train: dict[str, Any], **change: Any) -> None:
    body = {"train_no": train["trainNo"], "run_date": train["runDate"], **change}
    await world.mobility.control(world.mobility.booking, "/_sandbox/trains", body)


async def test_a_booked_trains_delay_and_cancellation_reach_the_app_that_booked(
    world: Trains, checker: flow.Booker
) -> None:
    mobility, app = world.mobility, await booking_app(world)
    token = await mobility.token_for(app.client_id, app.secret, SCOPES)
    citizen = subject(token)
    await world.notices.data(token, OPT_IN, t=["train_delayed", "train_cancelled"])
    silent = await mobility.token_for(app.client_id, app.secret, SCOPES)  # chose nothing
    day = datetime.now(KST).date() + timedelta(days=2)
    after = datetime(day.year, day.month, day.day, 9, tzinfo=KST)
    plan = await world.notices.data(
        token, TRAINS, **{"from": SEOUL_CITY_HALL, "to": BUSAN_HAEUNDAE, "after": after.isoformat()}
    )
    train = plan["journeys"]["itineraries"][0]["train"]
    mine, theirs = await ticket(world, token, train), await ticket(world, silent, train)

    await announce(world, train, delay_minutes=25)
    await flow.sync(checker)

    [delayed] = await received(app, citizen, 1)
    assert delayed["noticeType"] == "train_delayed"
    assert delayed["params"]["minutes"] == 25 and delayed["params"]["train_no"] == train["trainNo"]
    assert f"{train['trainNo']} 서울→부산" in delayed["body"]["ko"]
    assert "25분 지연됩니다" in delayed["body"]["ko"]
    assert "Seoul→Busan" in delayed["body"]["en"]

    await announce(world, train, cancelled=True)
    await flow.sync(checker)

    _, cancelled = await received(app, citizen, 2)
    assert cancelled["noticeType"] == "train_cancelled"
    assert f"({train['runDate']}) 운행이 취소되었습니다" in cancelled["body"]["ko"]
    for booked, owner in ((mine, token), (theirs, silent)):
        done = await world.notices.data(owner, BOOKING, i=booked["id"])
        assert (done["booking"]["status"], done["booking"]["trainCancelled"]) == ("REFUNDED", True)
        assert done["booking"]["refundedAmount"] == booked["amount"]
    await flow.sync(checker)  # nothing new: no second notice
    await asyncio.sleep(2.5)  # a look of the sources worker after it
    await world.notices.settled()
    assert len(app.receiver.of(citizen)) == 2
    assert app.receiver.of(subject(silent)) == []
    assert app.receiver.repeats == 0 and not app.receiver.refused
