"""What a hub process keeps for the sensors domain, and how it starts and stops."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from hub.core.result_cache import ResultCache
from hub.core.servers import Servers
from hub.core.settings import Settings
from resolvers.sensors import live_feed
from resolvers.sensors.live import LiveReadings
from resolvers.sensors.monitoring import AGGREGATE_CACHE
from resolvers.sensors.rollup_cache import RollupCache
from resolvers.sensors.settings import SensorsSettings


@dataclass(frozen=True)
class SensorsState:
    """Per process: recent aggregate answers, rollups in memory, live subscribers."""

    settings: SensorsSettings
    aggregates: ResultCache
    rollups: RollupCache
    live: LiveReadings

    @property
    def k_anonymity(self) -> int:
        return self.settings.k_anonymity


@contextlib.asynccontextmanager
async def lifespan(settings: Settings, servers: Servers) -> AsyncIterator[SensorsState]:
    """The state, and the live feed followed from the broker while the process serves."""
    section = settings.section(SensorsSettings)
    state = SensorsState(
        settings=section,
        aggregates=ResultCache(section.aggregate_cache_seconds, lookups=AGGREGATE_CACHE),
        rollups=RollupCache(section.rollup_memory_mb * 2**20),
        live=LiveReadings(),
    )
    topic = live_feed.live_topic_for(section.telemetry_topic)
    feed = asyncio.create_task(live_feed.follow(servers.broker, topic, state.live))
    try:
        yield state
    finally:
        feed.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feed
