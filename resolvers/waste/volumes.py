"""Collected food waste in figures: litres and kilograms per district, site, day and hour.

The hub's own collections are its collected pickups, counted on the Korean day (and hour)
of their scan: litres are the bins' volumes, kilograms the truck scale's weights (a pickup
collected where there is no scale has litres and no weight, hence `weighed`). A district's
daily figures add the apartment complexes' RFID volumes imported from the national system
(waste_rfid_volumes, kilograms and disposals per day): open data, the hub's part of a day
withheld when too few businesses make it (`DistrictDay.withheld`). Figures per site, or per
hour, come from the hub's collections alone (the RFID system reports whole days of whole
cities) and need a scope.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Literal

import asyncpg
import msgspec

from hub.core.errors import BadUserInput
from resolvers.waste.pickups import KST
from resolvers.waste.registry import Owner

MAX_DAYS = 366
MAX_HOURLY_DAYS = 31
Period = Literal["day", "hour"]

DISTRICT_DAYS = """
WITH days AS (
    SELECT d::date AS day FROM generate_series($2::date, $3::date, interval '1 day') AS d
), hub AS (
    SELECT (p.collected_at AT TIME ZONE 'Asia/Seoul')::date AS day, count(*) AS collections,
           coalesce(sum(p.volume_litres), 0) AS litres, count(p.weight_kg) AS weighed,
           coalesce(sum(p.weight_kg), 0) AS kg, count(DISTINCT s.generator_id) AS businesses
    FROM waste_pickups p JOIN waste_sites s USING (site_id)
    WHERE p.district_code = $1 AND p.status = 'collected'
      AND p.collected_at >= $2::date::timestamp AT TIME ZONE 'Asia/Seoul'
      AND p.collected_at < ($3::date + 1)::timestamp AT TIME ZONE 'Asia/Seoul'
    GROUP BY 1
), rfid AS (
    SELECT day, sum(quantity_kg) AS kg, sum(disposals) AS disposals
    FROM waste_rfid_volumes
    WHERE district_code = $1 AND apt_code = '' AND day BETWEEN $2 AND $3
    GROUP BY day
)
SELECT days.day, coalesce(hub.collections, 0) AS collections,
       coalesce(hub.litres, 0) AS litres, coalesce(hub.weighed, 0) AS weighed,
       coalesce(hub.kg, 0) AS kg, coalesce(hub.businesses, 0) AS businesses,
       coalesce(rfid.kg, 0) AS rfid_kg,
       coalesce(rfid.disposals, 0) AS rfid_disposals
FROM days LEFT JOIN hub USING (day) LEFT JOIN rfid USING (day)
ORDER BY days.day
"""
GROUPED = """
SELECT p.district_code, CASE WHEN $3 THEN p.site_id END AS site_id,
       date_trunc($4, p.collected_at AT TIME ZONE 'Asia/Seoul') AS period,
       count(*) AS collections, coalesce(sum(p.volume_litres), 0) AS litres,
       count(p.weight_kg) AS weighed, coalesce(sum(p.weight_kg), 0) AS kg
FROM waste_pickups p
JOIN waste_sites s USING (site_id) JOIN waste_generators g USING (generator_id)
WHERE p.status = 'collected' AND p.collected_at >= $1 AND p.collected_at < $2
  AND ($5::text IS NULL OR p.district_code = $5)
  AND ($6::uuid IS NULL OR p.site_id = $6)
  AND ($7::text IS NULL OR (g.owner_client = $7 AND g.owner_user IS NOT DISTINCT FROM $8))
GROUP BY 1, 2, 3
ORDER BY 3, 1, 2
"""


class DistrictDay(msgspec.Struct, frozen=True, kw_only=True):
    """One Korean day of a district: the hub's collections and the RFID system's."""

    district_code: str
    day: date
    collections: int
    litres: int
    weighed: int  # collections with a weight
    kg: Decimal  # weighed by the hub's collectors
    businesses: int  # distinct businesses whose collections these are
    rfid_kg: Decimal
    rfid_disposals: int

    @property
    def total_kg(self) -> Decimal:
        return self.kg + self.rfid_kg

    def withheld(self, min_businesses: int) -> bool:
        """Whether the hub's figures would show fewer than `min_businesses` businesses'
        own waste (a day without collections shows nobody's)."""
        return 0 < self.businesses < min_businesses


class Volume(msgspec.Struct, frozen=True, kw_only=True):
    """The hub's collections of one district (and site) in one day or hour."""

    district_code: str
    site_id: uuid.UUID | None  # None: every site of the district
    start: datetime  # the day's or hour's start, Korean time
    collections: int
    litres: int
    weighed: int
    kg: Decimal


def _span(first: date, last: date, most: int) -> None:
    if last < first:
        raise BadUserInput("`to` is on or after `from`", argument="to")
    if (last - first).days + 1 > most:
        raise BadUserInput(f"at most {most} days at once", argument="to")


async def district_days(
    conn: asyncpg.Connection | asyncpg.Pool, district_code: str, first: date, last: date
) -> list[DistrictDay]:
    """Every Korean day from `first` to `last` (both included) of the district, a day
    without collections too (zeros)."""
    _span(first, last, MAX_DAYS)
    rows = await conn.fetch(DISTRICT_DAYS, district_code, first, last)
    return [DistrictDay(district_code=district_code, **dict(row)) for row in rows]


async def volumes(
    conn: asyncpg.Connection | asyncpg.Pool,
    first: date,
    last: date,
    *,
    period: Period = "day",
    by_site: bool = False,
    district_code: str | None = None,
    site_id: uuid.UUID | None = None,
    owner: Owner | None = None,
) -> list[Volume]:
    """The hub's collections from `first` to `last` (Korean days, both included) per
    district (and site) and day (or hour), of the owner's sites only when `owner` is
    given; periods without collections are left out."""
    _span(first, last, MAX_HOURLY_DAYS if period == "hour" else MAX_DAYS)
    since = datetime.combine(first, datetime.min.time(), KST)
    until = datetime.combine(last + timedelta(days=1), datetime.min.time(), KST)
    rows = await conn.fetch(
        GROUPED,
        since,
        until,
        by_site,
        period,
        district_code,
        site_id,
        owner.client_id if owner else None,
        owner.user_id if owner else None,
    )
    return [
        Volume(
            district_code=row["district_code"],
            site_id=row["site_id"],
            start=row["period"].replace(tzinfo=KST),
            collections=row["collections"],
            litres=row["litres"],
            weighed=row["weighed"],
            kg=row["kg"],
        )
        for row in rows
    ]
