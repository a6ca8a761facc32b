"""What a hub process keeps for the mobility domain: settings, adapters and caches."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import cast

from adapters import connections
from adapters.connections import Connections
from adapters.kinds import LocalRoutes, RailBooking, TrainTimetable
from hub.core.context import Info
from hub.core.result_cache import ResultCache
from hub.core.servers import Servers
from hub.core.settings import Settings
from resolvers.mobility.settings import MobilitySettings


@dataclass(frozen=True)
class MobilityState:
    settings: MobilitySettings
    adapters: Connections
    timetables: ResultCache  # (dep, arr, day) → trains
    routes: ResultCache  # (from, to) rounded → local paths
    seats: ResultCache  # (train, day, dep, arr) → availability

    async def timetable(self) -> TrainTimetable:
        return cast(TrainTimetable, await self.adapters.get(self.settings.timetable_adapter))

    async def booking(self) -> RailBooking:
        return cast(RailBooking, await self.adapters.get(self.settings.booking_adapter))

    async def local_routes(self) -> LocalRoutes:
        return cast(LocalRoutes, await self.adapters.get(self.settings.routes_adapter))


@contextlib.asynccontextmanager
async def lifespan(settings: Settings, servers: Servers) -> AsyncIterator[MobilityState]:
    section = settings.section(MobilitySettings)
    async with adapters_of(section) as found:
        yield state_of_process(section, found)


def state_of_process(section: MobilitySettings, adapters: Connections) -> MobilityState:
    return MobilityState(
        settings=section,
        adapters=adapters,
        timetables=ResultCache(section.timetable_cache_seconds),
        routes=ResultCache(section.routes_cache_seconds),
        seats=ResultCache(section.seats_cache_seconds),
    )


def adapters_of(section: MobilitySettings) -> contextlib.AbstractAsyncContextManager[Connections]:
    """The process's mobility adapters, shared by its HTTP app and workers."""
    return connections.shared("mobility", lambda: Connections("mobility", sandbox=section.sandbox))


def state_of(info: Info) -> MobilityState:
    return info.context.state(MobilityState)
