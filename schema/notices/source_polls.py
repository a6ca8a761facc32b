"""The notices sources worker: the domains that only record (schema/notices/sources.py's
polls) asked what is new, each on its own timer, and their notices accepted.

`ieum worker notices-sources` (and `ieum serve`, unless IEUM_NOTICES_IN_SERVE=false).
Several may run at once: a notice's key says what it reports, so a second worker's look
makes no second notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import asyncpg

from hub.core import db
from hub.core.domain import Worker
from hub.core.servers import Servers
from hub.core.settings import Settings
from resolvers.notices import errors, store
from resolvers.notices.settings import NoticesSettings
from schema.notices.sources import Poll, polls
from schema.notices.state import hours_of

log = logging.getLogger(__name__)


async def run(settings: Settings, servers: Servers, stop: asyncio.Event) -> None:
    pool = await db.create_pool(servers.database, settings)
    try:
        await follow(pool, polls(settings, pool), hours_of(settings.section(NoticesSettings)), stop)
    finally:
        await pool.close()


async def follow(
    pool: asyncpg.Pool, found: Sequence[Poll], hours: store.QuietHours, stop: asyncio.Event
) -> None:
    """Run every poll on its timer until `stop`; a failed look is logged and tried again."""
    await asyncio.gather(*(_every(pool, poll, hours, stop) for poll in found))


async def _every(
    pool: asyncpg.Pool, poll: Poll, hours: store.QuietHours, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        try:
            await accept(pool, await poll.due(), hours, poll.domain)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            log.warning("notices.source_failed domain=%s error=%r", poll.domain, exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), poll.seconds)


async def accept(
    pool: asyncpg.Pool, notices: Sequence[store.NewNotice], hours: store.QuietHours, domain: str
) -> int:
    """Accept the notices (each once); how many were new."""
    made = 0
    for notice in notices:
        try:
            made += (await store.publish(pool, notice, hours)).created
        except errors.NoticeConflict:
            pass  # another worker made it first, from a look a moment apart
        except (errors.UnknownNoticeType, errors.MissingParameter) as exc:
            log.error("notices.source_not_publishable domain=%s error=%s", domain, exc)
    return made


WORKER = Worker(
    name="notices-sources",
    help="notices from what other domains record: fine dust per district, pickups collected,"
    " booked trains delayed or cancelled",
    run=run,
    in_serve=lambda settings: settings.section(NoticesSettings).in_serve,
)
