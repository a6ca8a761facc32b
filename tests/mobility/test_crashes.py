"""A hub killed between a booking's card payment and its ticket, then started again: the
booking is ticketed once, the card charged once.

The drill runs `ieum serve` told to die right after the payment is confirmed
(IEUM_MOBILITY_CRASH_POINT=after_payment), as a power cut or an OOM kill would, then a
clean hub on the same database and port, whose mobility worker must finish the booking."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from adapters import registry
from adapters.sandbox.server import RunningSandbox, running
from hub.core import db
from hub.core.settings import Settings
from hub.embedded.ports import free_port
from tests.mobility.helpers import BUSAN_HAEUNDAE, SEOUL_CITY_HALL, MobilityWorld
from tests.payments.helpers import World, adapter_environment
from tests.payments.test_crashes import CRASHED, ServeProcess

pytestmark = pytest.mark.slow  # once per CI run: not again in the PostgreSQL 15 pass
KST = ZoneInfo("Asia/Seoul")
SANDBOXES = ("tago", "railbooking", "odsay", "localtax", "tosspayments")


@pytest.fixture(scope="module")
async def sandboxes() -> AsyncIterator[dict[str, RunningSandbox]]:
    async with contextlib.AsyncExitStack() as stack:
        found = {}
        for name in SANDBOXES:
            sandbox = registry.get(name).sandbox
            assert sandbox is not None
            found[name] = await stack.enter_async_context(running(sandbox))
        yield found


async def test_a_hub_killed_between_payment_and_ticket_tickets_once(
    migrated_url: str, kafka_bootstrap: str, sandboxes: dict[str, RunningSandbox]
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        "IEUM_DATABASE_URL": migrated_url,
        "IEUM_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "IEUM_PUBLIC_URL": url,
        "IEUM_INGEST": "false",
        "IEUM_PAYMENTS_SANDBOX": "false",
        "IEUM_MOBILITY_SANDBOX": "false",
        "IEUM_MOBILITY_SYNC_SECONDS": "0.5",
        "IEUM_MOBILITY_HOLDING_STALE_SECONDS": "1",
    }
    with adapter_environment(*sandboxes.values()):
        prefixes = tuple(registry.get(name).env_prefix for name in SANDBOXES)
        env |= {k: v for k, v in os.environ.items() if k.startswith(prefixes)}
    settings = Settings.from_env()
    pool = await db.create_pool(migrated_url, settings)
    hub = World(url, pool, sandboxes["localtax"], sandboxes["tosspayments"], settings, None)  # type: ignore[arg-type]
    world = MobilityWorld(hub, sandboxes["tago"], sandboxes["railbooking"], sandboxes["odsay"])
    try:
        doomed = await asyncio.to_thread(
            ServeProcess, port, env | {"IEUM_MOBILITY_CRASH_POINT": "after_payment"}
        )
        try:
            _, token = await world.citizen()
            day = datetime.now(KST).date() + timedelta(days=2)
            after = datetime(day.year, day.month, day.day, 10, tzinfo=KST)
            plan = await hub.gql(
                token,
                """query($f: PlaceInput!, $t: PlaceInput!, $a: DateTime) {
                     journeys(from: $f, to: $t, departAfter: $a, limit: 1) { itineraries {
                       train { trainNo runDate from { code } to { code } } } } }""",
                {"f": SEOUL_CITY_HALL, "t": BUSAN_HAEUNDAE, "a": after.isoformat()},
            )
            train = plan["data"]["journeys"]["itineraries"][0]["train"]
            held = (await world.hold(token, train, str(uuid.uuid4())))["data"]["holdSeats"]
            card = await hub.card_present(held["orderId"], held["amount"])
            with pytest.raises(httpx.TransportError):  # the process dies mid-request
                await world.pay(token, held, str(uuid.uuid4()), card)
            assert await asyncio.to_thread(doomed.process.wait, 30) == CRASHED
        finally:
            doomed.stop()
        left = await pool.fetchrow(
            "SELECT b.status, p.status AS paid FROM mobility_bookings b"
            " JOIN payments p ON p.payment_id = b.payment_id WHERE b.booking_id = $1",
            uuid.UUID(held["id"]),
        )
        assert (left["status"], left["paid"]) == ("paying", "confirmed")

        restarted = await asyncio.to_thread(ServeProcess, port, env)
        try:
            status = await _finished(pool, held["id"])
        finally:
            restarted.stop()

        assert status == "ticketed"
        async with httpx.AsyncClient(base_url=sandboxes["railbooking"].url) as http:
            listed = (await http.get("/_sandbox/reservations")).json()
        mine = [r for r in listed if r["h_ptnr_rsv_id"] == held["id"]]
        assert [r["h_rsv_stt_cd"] for r in mine] == ["TICKETED"]
        charged = await hub.gateway_payment(held["orderId"])
        assert charged is not None and charged["status"] == "DONE"
        assert len(charged.get("cancels") or []) == 0
        paid = await pool.fetchval(
            "SELECT count(*) FROM payments WHERE source = 'mobility' AND reference = $1",
            held["id"],
        )
        assert paid == 1
    finally:
        await pool.close()


async def _finished(pool: db.Pool, booking_id: str, seconds: float = 30) -> str:
    deadline = time.monotonic() + seconds
    status = ""
    while time.monotonic() < deadline:
        status = await pool.fetchval(
            "SELECT status FROM mobility_bookings WHERE booking_id = $1", uuid.UUID(booking_id)
        )
        if status != "paying":
            return status
        await asyncio.sleep(0.2)
    return status
