"""Notices from waste collections: a business's food waste collected, told to its owner.

The waste domain announces collections only to live subscribers, so this source asks its
Python API for the collections recorded since the last look (`scans.collections_since`),
every few seconds. A business registered by a citizen (through a business app) has an
owner to tell; one registered by an app alone has none. Only owners who chose
`pickup_collected` get a notice (one per pickup: `event/waste/pickup-<id>`), so a city's
thousands of collections a day make no notices nobody reads.

The cursor lives in memory: a worker that starts looks back a day (a collection older
than that is no news), and reads a minute behind its cursor, since a scan's transaction
may commit after later ones; notices already made are skipped by their keys.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from resolvers.notices.quiet import KST
from resolvers.notices.store import NewNotice
from resolvers.waste import scans

DOMAIN = "waste"
TYPE = "pickup_collected"
LOOKBACK = timedelta(days=1)  # a collection scanned longer ago than this is not told
BEHIND = timedelta(minutes=1)  # how far behind its cursor a look starts
PAGE = 500


class Collections:
    """Collections become notices: `due()` gives those recorded since the last call."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.seen: datetime | None = None  # the latest recorded_at read

    async def due(self) -> list[NewNotice]:
        now = datetime.now(UTC)
        since = now - LOOKBACK
        after = (since if self.seen is None else max(since, self.seen - BEHIND), uuid.UUID(int=0))
        found: list[scans.CollectedPickup] = []
        while True:
            page = await scans.collections_since(self.pool, after, since, PAGE)
            found += page
            if len(page) < PAGE:
                break
            after = (page[-1].recorded_at, page[-1].scan_id)
        if found:
            self.seen = max(self.seen or since, found[-1].recorded_at)
        return await self._new(found)

    async def _new(self, found: list[scans.CollectedPickup]) -> list[NewNotice]:
        """The notices of collections whose owner chose them and that were not made yet."""
        owners = list({c.owner_user for c in found if c.owner_user is not None})
        if not owners:
            return []
        listening = {
            row["user_id"]
            for row in await self.pool.fetch(
                "SELECT DISTINCT user_id FROM notice_choices"
                " WHERE type_code = $1 AND withdrawn_at IS NULL AND user_id = ANY($2::uuid[])",
                TYPE,
                owners,
            )
        }
        wanted = {
            notice.dedupe_key: notice
            for notice in (_notice(c) for c in found if c.owner_user in listening)
        }
        made = {
            row["dedupe_key"]
            for row in await self.pool.fetch(
                "SELECT dedupe_key FROM notices WHERE dedupe_key = ANY($1::text[])", list(wanted)
            )
        }
        return [notice for key, notice in wanted.items() if key not in made]


def _notice(collected: scans.CollectedPickup) -> NewNotice:
    return NewNotice.from_event(
        DOMAIN,
        f"pickup-{collected.pickup_id}",
        type_code=TYPE,
        user_id=collected.owner_user,
        params={
            "site": f"{collected.business_name} {collected.site_name}",
            "collected_at": f"{collected.collected_at.astimezone(KST):%Y-%m-%d %H:%M}",
        },
    )
