"""The mobility worker: finishes bookings their requests left mid-way (lost answers,
crashes, lapsed holds, refunds under way), every IEUM_MOBILITY_SYNC_SECONDS."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from adapters.errors import UpstreamError
from hub.core import db
from hub.core.domain import Worker
from hub.core.servers import Servers
from hub.core.settings import Settings
from resolvers.mobility.settings import MobilitySettings
from resolvers.payments.settings import PaymentsSettings
from schema.mobility import booking
from schema.mobility.state import adapters_of, state_of_process
from schema.payments import flow, upstreams

log = logging.getLogger(__name__)


async def _run(settings: Settings, servers: Servers, stop: asyncio.Event) -> None:
    section = settings.section(MobilitySettings)
    paying = settings.section(PaymentsSettings)
    pool = await db.create_pool(servers.database, settings)
    try:
        async with (
            adapters_of(section) as adapters,
            upstreams.shared(paying, settings.issuer) as payment_upstreams,
        ):
            booker = booking.Booker(
                pool,
                state_of_process(section, adapters),
                flow.Payments(pool, payment_upstreams, paying),
            )
            while not stop.is_set():
                try:
                    moved = await booking.sync(booker)
                    if moved:
                        log.info("mobility.sync moved=%d", moved)
                except (UpstreamError, asyncpg.PostgresError, OSError, TimeoutError) as exc:
                    log.warning("mobility.sync_failed error=%r", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), section.sync_seconds)
    finally:
        await pool.close()


BOOKINGS = Worker(
    name="mobility",
    help="train bookings finished after lost answers and crashes; lapsed holds released",
    run=_run,
    in_serve=lambda settings: settings.section(MobilitySettings).in_serve,
)
