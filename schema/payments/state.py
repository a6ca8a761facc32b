"""What a hub process keeps for the payments domain: its settings and its adapters."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

from hub.core.context import Info
from hub.core.servers import Servers
from hub.core.settings import Settings
from resolvers.payments.settings import PaymentsSettings
from schema.payments import upstreams
from schema.payments.flow import Payments


@dataclass(frozen=True)
class PaymentsState:
    settings: PaymentsSettings
    upstreams: upstreams.Upstreams
    broker: str | None

    def payments(self, pool: asyncpg.Pool) -> Payments:
        return Payments(pool, self.upstreams, self.settings)


@contextlib.asynccontextmanager
async def lifespan(settings: Settings, servers: Servers) -> AsyncIterator[PaymentsState]:
    section = settings.section(PaymentsSettings)
    async with upstreams.shared(section, settings.issuer) as shared:
        yield PaymentsState(section, shared, servers.kafka_bootstrap)


def hub_of(info: Info) -> Payments:
    """The payment flow for this request."""
    return info.context.state(PaymentsState).payments(info.context.db)
