"""Coverage of a display message: how many units showed it, for how long, and where.

Counts and minutes are open data; which units showed it (device and vehicle ids) is for
the operator's audited read only. How long comes from the units' acks: each `shown` until
the unit's next `hidden` (or, without one yet, until now, the window's end or the
withdrawal, whichever came first). Where comes from the positions the targeting worker
saw while a unit showed it: a unit counts in each cell (and district) it was seen in, for
each minute it was seen there. A cell or district with fewer than `min_units` distinct
units is left out (as sensors leaves out cells with too few vehicles), and counted as such.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from h3.api import basic_int as h3
from shapely import STRtree
from shapely.geometry import Point, shape

from resolvers.notices.displays import DisplayMessage
from resolvers.platform import districts


@dataclass(frozen=True)
class Showing:
    device_id: str
    vehicle_id: str | None
    shown_at: datetime
    hidden_at: datetime | None  # None: showing still (as far as the acks tell)
    hidden_reason: str | None
    minutes: float


@dataclass(frozen=True)
class Place:
    key: str  # H3 cell (text) or district code
    units: int
    unit_minutes: int  # minutes in which a showing unit was seen there


@dataclass(frozen=True)
class Coverage:
    units: int
    unit_minutes: float
    places: list[Place]
    suppressed: int  # places with fewer than min_units units, left out


async def showings(
    pool: asyncpg.Pool, message: DisplayMessage, now: datetime | None = None
) -> list[Showing]:
    """Each time a unit showed the message, from its acks, in time order."""
    rows = await pool.fetch(
        "SELECT a.device_id, a.state, a.reason, a.at, t.vehicle_id FROM display_acks a"
        " LEFT JOIN display_targets t USING (message_id, device_id)"
        " WHERE a.message_id = $1 ORDER BY a.device_id, a.at, a.received_at",
        message.message_id,
    )
    now = now or datetime.now(UTC)
    cap = min(now, message.ends_at, message.withdrawn_at or message.ends_at)
    found: list[Showing] = []
    opened: dict[str, tuple[datetime, str | None]] = {}
    for row in rows:
        device = row["device_id"]
        if row["state"] == "shown":
            opened.setdefault(device, (row["at"], row["vehicle_id"]))
        elif device in opened:
            shown_at, vehicle = opened.pop(device)
            found.append(_showing(device, vehicle, shown_at, row["at"], row["reason"]))
    for device, (shown_at, vehicle) in opened.items():
        found.append(_showing(device, vehicle, shown_at, None, None, cap))
    return sorted(found, key=lambda s: (s.shown_at, s.device_id))


def _showing(
    device: str,
    vehicle: str | None,
    shown_at: datetime,
    hidden_at: datetime | None,
    reason: str | None,
    cap: datetime | None = None,
) -> Showing:
    end = hidden_at or max(cap or shown_at, shown_at)
    minutes = (end - shown_at).total_seconds() / 60
    return Showing(device, vehicle, shown_at, hidden_at, reason, minutes)


async def coverage(
    pool: asyncpg.Pool, message: DisplayMessage, *, by: str, min_units: int
) -> Coverage:
    """Totals, and places by `by`: "cell8", "cell9" or "district"."""
    shown = await showings(pool, message)
    rows = await pool.fetch(
        "SELECT cell, device_id, count(*) AS minutes FROM display_presence"
        " WHERE message_id = $1 GROUP BY cell, device_id",
        message.message_id,
    )
    if by == "district":
        where = await _districts_of(pool, message, {row["cell"] for row in rows})
    else:
        resolution = 8 if by == "cell8" else 9
        where = {
            row["cell"]: h3.int_to_str(h3.cell_to_parent(row["cell"], resolution)) for row in rows
        }
    units: dict[str, set[str]] = defaultdict(set)
    minutes: dict[str, int] = defaultdict(int)
    for row in rows:
        key = where.get(row["cell"])
        if key is None:
            continue
        units[key].add(row["device_id"])
        minutes[key] += row["minutes"]
    places = [
        Place(key, len(units[key]), minutes[key])
        for key in sorted(units)
        if len(units[key]) >= min_units
    ]
    return Coverage(
        units=len({s.device_id for s in shown}),
        unit_minutes=round(sum(s.minutes for s in shown), 2),
        places=places,
        suppressed=len(units) - len(places),
    )


async def _districts_of(
    pool: asyncpg.Pool, message: DisplayMessage, cells: set[int]
) -> dict[int, str]:
    """The district each cell's centre lies in (a district message: its own)."""
    if message.district_code is not None:
        return dict.fromkeys(cells, message.district_code)
    if not cells:
        return {}
    index = await _district_index(pool)
    found: dict[int, str] = {}
    for cell in cells:
        lat, lng = h3.cell_to_latlng(cell)
        code = index.locate(lat, lng)
        if code is not None:
            found[cell] = code
    return found


class DistrictIndex:
    """Point → district over every boundary, built once per process (reference data
    changes only when the hub starts)."""

    def __init__(self, boundaries: dict[str, dict[str, object]]) -> None:
        self.codes = list(boundaries)
        self.shapes = [shape(boundaries[code]) for code in self.codes]
        self.tree = STRtree(self.shapes)

    def locate(self, lat: float, lng: float) -> str | None:
        point = Point(lng, lat)
        for i in self.tree.query(point, predicate="intersects"):
            return self.codes[int(i)]
        return None


_INDEX: dict[str, DistrictIndex] = {}


async def _district_index(pool: asyncpg.Pool) -> DistrictIndex:
    if "all" not in _INDEX:
        codes = [d.code for d in await districts.list_districts(pool, None)]
        boundaries = await districts.boundary_loader(pool).load_many(codes)
        _INDEX["all"] = DistrictIndex(dict(zip(codes, boundaries, strict=True)))
    return _INDEX["all"]
