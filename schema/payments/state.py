"""What a hub process keeps for the payments domain: its settings, its adapters and its
database pool."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

from hub.core import db
from hub.core.context import Info
from hub.core.servers import Servers
from hub.core.settings import Settings
from resolvers.payments.settings import PaymentsSettings
from schema.payments import upstreams
from schema.payments.flow import Payments

# The settings of the payment flow's own pool (hub.core.db.create_pool). The shared pools
# force custom plans (sensors' aggregates need them), which planned each of the flow's
# statements again at every run: about a quarter of PostgreSQL's CPU per payment went to
# planning lookups by key whose plans do not depend on the values. PostgreSQL's default
# keeps a statement's plan once five runs showed it costs no more than a fresh one.
POOL_SETTINGS = {"plan_cache_mode": "auto"}


@dataclass(frozen=True)
class PaymentsState:
    settings: PaymentsSettings
    upstreams: upstreams.Upstreams
    broker: str | None
    pool: asyncpg.Pool

    def payments(self, pool: asyncpg.Pool | None = None) -> Payments:
        """The payment flow, on its own pool unless the caller gives one."""
        return Payments(self.pool if pool is None else pool, self.upstreams, self.settings)


@contextlib.asynccontextmanager
async def lifespan(settings: Settings, servers: Servers) -> AsyncIterator[PaymentsState]:
    section = settings.section(PaymentsSettings)
    # Its connections opened as payments come: a hub that takes none keeps none.
    pool = await db.create_pool(
        servers.database, settings.model_copy(update={"db_pool_min": 0}), POOL_SETTINGS
    )
    try:
        async with upstreams.shared(section, settings.issuer) as shared:
            yield PaymentsState(section, shared, servers.kafka_bootstrap, pool)
    finally:
        await pool.close()


def hub_of(info: Info) -> Payments:
    """The payment flow for this request."""
    return info.context.state(PaymentsState).payments()
