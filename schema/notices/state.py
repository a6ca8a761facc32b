"""What a hub process keeps for the notices domain: its settings."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from hub.core.servers import Servers
from hub.core.settings import Settings
from resolvers.notices.settings import NoticesSettings
from resolvers.notices.store import QuietHours


@dataclass(frozen=True)
class NoticesState:
    settings: NoticesSettings

    @property
    def hours(self) -> QuietHours:
        return hours_of(self.settings)


def hours_of(section: NoticesSettings) -> QuietHours:
    return QuietHours(section.day_starts_hour, section.day_ends_hour)


@contextlib.asynccontextmanager
async def lifespan(settings: Settings, servers: Servers) -> AsyncIterator[NoticesState]:
    yield NoticesState(settings.section(NoticesSettings))
