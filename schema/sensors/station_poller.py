"""Reads fixed public air-quality stations from every configured station adapter.

An installed adapter of kind `air_quality_stations` whose settings are complete is read
every `IEUM_STATION_POLL_SECONDS`; what it reports is stored through the sensors domain's
Python API. An upstream that fails is logged and tried again next round: the last values
stay served until they are older than a few hours.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from adapters import registry
from adapters.errors import UpstreamError
from adapters.kinds import AirQualityStations, Kind
from hub.core import db
from hub.core.domain import Command, Worker
from hub.core.servers import Servers
from hub.core.settings import Settings
from resolvers.sensors import stations
from resolvers.sensors.settings import SensorsSettings

log = logging.getLogger(__name__)


def configured() -> dict[str, registry.Adapter[registry.AdapterSettings]]:
    """The installed station adapters whose settings are complete."""
    ready = {s.name for s in registry.status() if s.configured}
    return {
        name: adapter
        for name, adapter in registry.load_all().items()
        if adapter.kind is Kind.AIR_QUALITY_STATIONS and name in ready
    }


async def poll_once(settings: Settings, servers: Servers) -> dict[str, int]:
    """One round: station-hours stored per adapter (an adapter that failed: -1)."""
    stored: dict[str, int] = {}
    pool = await db.create_pool(servers.database, settings)
    try:
        for name, adapter in configured().items():
            connection = adapter.connect(adapter.read_settings())
            assert isinstance(connection, AirQualityStations)
            try:
                measured = await connection.measurements()
                stored[name] = await stations.record(pool, name, measured)
            except UpstreamError as exc:
                log.warning("stations.poll_failed adapter=%s error=%s", name, exc)
                stored[name] = -1
            finally:
                await connection.aclose()
    finally:
        await pool.close()
    return stored


async def run(settings: Settings, servers: Servers, stop: asyncio.Event) -> None:
    interval = settings.section(SensorsSettings).station_poll_seconds
    while not stop.is_set():
        stored = await poll_once(settings, servers)
        log.info("stations.polled stored=%s", stored)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


POLLER = Worker(
    name="stations",
    help="fixed air-quality stations from their adapters",
    run=run,
    in_serve=lambda settings: bool(configured()),
)


def _run_command(settings: Settings, servers: Servers, args: argparse.Namespace) -> int:
    if not configured():
        print("no station adapter is configured (see `ieum adapters list`)")
        return 1
    stored = asyncio.run(poll_once(settings, servers))
    for name, count in stored.items():
        print(f"{name}: {'failed, see the log' if count < 0 else f'{count} station-hours'}")
    return 0 if all(count >= 0 for count in stored.values()) else 1


POLL_COMMAND = Command(
    "stations", "read fixed air-quality stations once from their adapters", _run_command
)
