"""What a hub process keeps for the notices domain: its settings and the agency adapter."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from adapters.connections import Connections
from adapters.kinds import NoticeSource
from hub.core.errors import UpstreamUnavailable
from hub.core.servers import Servers
from hub.core.settings import Settings
from resolvers.notices.settings import NoticesSettings
from resolvers.notices.store import QuietHours


@dataclass(frozen=True)
class NoticesState:
    settings: NoticesSettings
    connections: Connections

    @property
    def hours(self) -> QuietHours:
        return hours_of(self.settings)

    async def agencies(self) -> NoticeSource:
        return await agency_source(self.connections, self.settings)


def hours_of(section: NoticesSettings) -> QuietHours:
    return QuietHours(section.day_starts_hour, section.day_ends_hour)


async def agency_source(connections: Connections, section: NoticesSettings) -> NoticeSource:
    """The agency adapter (UPSTREAM_UNAVAILABLE naming what is missing when unset)."""
    found = await connections.get(section.agency_adapter)
    if not isinstance(found, NoticeSource):
        raise UpstreamUnavailable(
            f"adapter {section.agency_adapter} is not of kind notice_source",
            upstream=section.agency_adapter,
        )
    return found


@contextlib.asynccontextmanager
async def lifespan(settings: Settings, servers: Servers) -> AsyncIterator[NoticesState]:
    connections = Connections("notices", sandbox=False)
    try:
        yield NoticesState(settings.section(NoticesSettings), connections)
    finally:
        await connections.aclose()
