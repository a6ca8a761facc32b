"""Notices from booked trains: a delay or a cancellation the operator announced, told to
the citizen who booked through the app they booked it with.

The mobility worker stores what it learns of a ticketed booking's train with the time it
saw it; this source asks mobility's Python API for the changes since the last look
(`bookings.changed_since`), every few seconds. A citizen hears of it only if they chose
the type (`train_delayed`, `train_cancelled`) in the app that booked: one notice per delay
seen (`event/mobility/train-<booking>-<epoch seconds of the change>`), one per cancelled
train (`…/train-<booking>-cancelled`). A train back on time makes none.

The cursor lives in memory, as in from_waste: a worker that starts looks back a day and
each look reads a minute behind its cursor; notices already made are skipped by key.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from resolvers.mobility import bookings, stations
from resolvers.mobility.bookings import TrainChange
from resolvers.notices.quiet import KST
from resolvers.notices.store import NewNotice

DOMAIN = "mobility"
DELAYED = "train_delayed"
CANCELLED = "train_cancelled"
LOOKBACK = timedelta(days=1)  # a change seen longer ago than this is not told
BEHIND = timedelta(minutes=1)  # how far behind its cursor a look starts
PAGE = 500


class TrainChanges:
    """Booked trains' changes become notices: `due()` gives those seen since the last call."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.seen: datetime | None = None  # the latest changed_at read

    async def due(self) -> list[NewNotice]:
        since = datetime.now(UTC) - LOOKBACK
        after = since if self.seen is None else max(since, self.seen - BEHIND)
        found: list[TrainChange] = []
        while True:
            page = await bookings.changed_since(self.pool, after, PAGE)
            found += page
            if len(page) < PAGE:
                break
            after = page[-1].changed_at
        if found:
            self.seen = max(self.seen or since, found[-1].changed_at)
        return await self._new([c for c in found if c.cancelled or c.delay_minutes > 0])

    async def _new(self, found: list[TrainChange]) -> list[NewNotice]:
        """The notices of changes whose citizen chose the type in the booking's app and
        that were not made yet."""
        if not found:
            return []
        listening = {
            (row["user_id"], row["client_id"], row["type_code"])
            for row in await self.pool.fetch(
                "SELECT user_id, client_id, type_code FROM notice_choices"
                " WHERE type_code = ANY($1::text[]) AND withdrawn_at IS NULL"
                " AND user_id = ANY($2::uuid[])",
                [DELAYED, CANCELLED],
                list({c.user_id for c in found}),
            )
        }
        wanted = {
            notice.dedupe_key: notice
            for change in found
            if (change.user_id, change.client_id, _type(change)) in listening
            for notice in [_notice(change)]
        }
        made = {
            row["dedupe_key"]
            for row in await self.pool.fetch(
                "SELECT dedupe_key FROM notices WHERE dedupe_key = ANY($1::text[])", list(wanted)
            )
        }
        return [notice for key, notice in wanted.items() if key not in made]


def _type(change: TrainChange) -> str:
    return CANCELLED if change.cancelled else DELAYED


def _notice(change: TrainChange) -> NewNotice:
    dep, arr = stations.by_code(change.dep_station), stations.by_code(change.arr_station)
    names = (dep.name if dep else change.dep_station, arr.name if arr else change.arr_station)
    names_en = (dep.name_en if dep else names[0], arr.name_en if arr else names[1])
    departs = f"{change.departs_at.astimezone(KST):%H:%M}"
    params: dict[str, object] = {
        "train": f"{change.grade} {change.train_no} {names[0]}→{names[1]} ({departs})",
        "train_no": change.train_no,
        "from": names[0],
        "to": names[1],
        "run_date": change.run_date.isoformat(),
        "departs_at": f"{change.departs_at.astimezone(KST):%Y-%m-%d %H:%M}",
    }
    params_en = {
        "train": f"{change.grade} {change.train_no} {names_en[0]}→{names_en[1]} ({departs})",
        "from": names_en[0],
        "to": names_en[1],
    }
    if change.cancelled:
        event = f"train-{change.booking_id}-cancelled"
    else:
        params["minutes"] = change.delay_minutes
        event = f"train-{change.booking_id}-{int(change.changed_at.timestamp())}"
    return NewNotice.from_event(
        DOMAIN,
        event,
        type_code=_type(change),
        user_id=change.user_id,
        client_id=change.client_id,  # the app that booked it, not every app the citizen chose
        params=params,
        params_en=params_en,
    )
