"""The notices domain's worker.

`ieum worker notices` (and `ieum serve`, unless IEUM_NOTICES_IN_SERVE=false) runs the
delivery lanes (webhooks), the consumer of the other domains' events (notices from
payments …) and the reports to agencies. Several workers may run at once: deliveries and
reports are claimed with SKIP LOCKED, events are read in one consumer group.
"""

from __future__ import annotations

import asyncio

from hub.core import db
from hub.core.domain import Worker
from hub.core.servers import Servers
from hub.core.settings import Settings
from resolvers.notices import delivery, events
from resolvers.notices.settings import NoticesSettings
from schema.notices.sources import sources
from schema.notices.state import hours_of


async def run_worker(settings: Settings, servers: Servers, stop: asyncio.Event) -> None:
    section = settings.section(NoticesSettings)
    pool = await db.create_pool(servers.database, settings)
    try:
        async with delivery.http_client(section) as http:
            loops = [delivery.Deliverer(pool, section, http).run(stop, servers.database, settings)]
            if servers.kafka_bootstrap is not None:
                loops.append(
                    events.consume(
                        pool,
                        servers.kafka_bootstrap,
                        section.events_group,
                        sources(settings),
                        hours_of(section),
                        stop,
                    )
                )
            await asyncio.gather(*loops)
    finally:
        await pool.close()


WORKER = Worker(
    name="notices",
    help="notice deliveries to apps' webhooks, notices from domain events, agency reports",
    run=run_worker,
    in_serve=lambda settings: settings.section(NoticesSettings).in_serve,
)
