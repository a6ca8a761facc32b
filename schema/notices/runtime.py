"""The notices domain's worker.

`ieum worker notices` (and `ieum serve`, unless IEUM_NOTICES_IN_SERVE=false) runs the
delivery lanes (webhooks), the consumer of the other domains' events (notices from
payments …) and the reports to agencies through the agency adapter. Several workers may
run at once: deliveries and reports are claimed with SKIP LOCKED, events are read in one
consumer group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import asyncpg

from adapters.connections import Connections
from adapters.kinds import NoticeReport, ReportStatus
from hub.core import db
from hub.core.domain import Worker
from hub.core.errors import IeumError
from hub.core.servers import Servers
from hub.core.settings import Settings
from resolvers.notices import delivery, events, reports
from resolvers.notices.settings import NoticesSettings
from schema.notices.sources import sources
from schema.notices.state import agency_source, hours_of

log = logging.getLogger(__name__)
REPORTS_SECONDS = 1.0
REPORTS_AT_ONCE = 200


async def run_worker(settings: Settings, servers: Servers, stop: asyncio.Event) -> None:
    section = settings.section(NoticesSettings)
    pool = await db.create_pool(servers.database, settings)
    connections = Connections("notices", sandbox=False)
    try:
        loops = [
            delivery.Deliverer(pool, section).run(stop, servers.database, settings),
            _report(pool, connections, section, stop),
        ]
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
        await connections.aclose()
        await pool.close()


async def _report(
    pool: asyncpg.Pool, connections: Connections, section: NoticesSettings, stop: asyncio.Event
) -> None:
    """Send agencies their reports until `stop` (a backlog drains at once)."""

    async def send(due: Sequence[reports.Pending]) -> None:
        wire = [
            NoticeReport(
                agency=report.org_code or report.agency,
                notice_id=report.agency_notice_id,
                status=ReportStatus(report.kind),
                at=report.occurred_at,
                reason=report.detail if report.kind == "failed" else "",
            )
            for report in due
        ]
        try:
            await (await agency_source(connections, section)).report(wire)
        except (IeumError, ValueError) as exc:  # down, refusing, or not set up for it
            raise reports.AgencyUnavailable(str(exc)) from exc

    while not stop.is_set():
        try:
            async with pool.acquire() as conn:
                while await reports.send_due(conn, REPORTS_AT_ONCE, send) == REPORTS_AT_ONCE:
                    pass
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            log.warning("notices.reports_failed error=%r", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), REPORTS_SECONDS)


WORKER = Worker(
    name="notices",
    help="notice deliveries to apps' webhooks, notices from domain events, agency reports",
    run=run_worker,
    in_serve=lambda settings: settings.section(NoticesSettings).in_serve,
)
