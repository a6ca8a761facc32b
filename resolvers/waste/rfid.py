"""Volumes of the national RFID volume-rate system: which cities and complexes to import,
the idempotent upsert of a month, and a district's daily totals of both sources (the hub's
collected pickups and the apartments' RFID bins)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from typing import Protocol

import asyncpg


class Volume(Protocol):
    """What the RFID adapter reports per day (adapters.kinds.RfidDailyVolume)."""

    @property
    def city_code(self) -> str: ...
    @property
    def apt_code(self) -> str: ...
    @property
    def day(self) -> date: ...
    @property
    def quantity_kg(self) -> Decimal: ...
    @property
    def disposals(self) -> int: ...


@dataclass(frozen=True)
class MappedCity:
    city_code: str
    district_code: str
    agency_name: str  # citySidoName and citySggName as the agency writes them
    apartments: tuple[str, ...]  # complexes imported one by one


@dataclass(frozen=True)
class DayTotal:
    """A district's Korean day: the hub's collected pickups and the RFID bins' volumes."""

    day: date
    hub_kg: Decimal  # weighed pickups only: one collected without a weight adds no kg
    hub_pickups: int
    hub_businesses: int  # distinct businesses whose pickups these are
    rfid_kg: Decimal
    rfid_disposals: int

    @property
    def quantity_kg(self) -> Decimal:
        return self.hub_kg + self.rfid_kg

    @property
    def disposals(self) -> int:
        return self.hub_pickups + self.rfid_disposals

    def opened(self, min_businesses: int) -> DayTotal | None:
        """The day as open data: the hub's part left out when fewer than `min_businesses`
        businesses make it (it would show one business's own waste); None when nothing
        is left to show."""
        if self.hub_businesses == 0 or self.hub_businesses >= min_businesses:
            return self
        if not self.rfid_disposals and not self.rfid_kg:
            return None
        return replace(self, hub_kg=Decimal(0), hub_pickups=0, hub_businesses=0)


async def mapped_cities(pool: asyncpg.Pool) -> dict[str, MappedCity]:
    """The cities to import, by the agency's code, with their complexes."""
    rows = await pool.fetch(
        "SELECT c.city_code, c.district_code, c.agency_name,"
        " coalesce(array_agg(a.apt_code ORDER BY a.apt_code)"
        "  FILTER (WHERE a.apt_code IS NOT NULL), '{}') AS apartments"
        " FROM waste_rfid_cities c LEFT JOIN waste_rfid_apartments a USING (city_code)"
        " GROUP BY c.city_code ORDER BY c.city_code"
    )
    return {
        row["city_code"]: MappedCity(
            row["city_code"], row["district_code"], row["agency_name"], tuple(row["apartments"])
        )
        for row in rows
    }


async def upsert(pool: asyncpg.Pool, volumes: Sequence[Volume]) -> int:
    """Store the volumes of mapped cities in one transaction; a day already stored with the
    same values is left as it is. Returns the rows added or revised."""
    if not volumes:
        return 0
    changed: int = await pool.fetchval(
        """
        WITH incoming AS (
            SELECT * FROM unnest($1::text[], $2::text[], $3::date[], $4::numeric[], $5::int[])
                AS v(city_code, apt_code, day, quantity_kg, disposals)
        ), written AS (
            INSERT INTO waste_rfid_volumes AS old
                (district_code, city_code, apt_code, day, quantity_kg, disposals)
            SELECT c.district_code, v.city_code, v.apt_code, v.day, v.quantity_kg, v.disposals
            FROM incoming v JOIN waste_rfid_cities c USING (city_code)
            ON CONFLICT (city_code, apt_code, day) DO UPDATE
                SET district_code = EXCLUDED.district_code,
                    quantity_kg = EXCLUDED.quantity_kg,
                    disposals = EXCLUDED.disposals,
                    imported_at = now()
                WHERE (old.district_code, old.quantity_kg, old.disposals)
                    IS DISTINCT FROM
                    (EXCLUDED.district_code, EXCLUDED.quantity_kg, EXCLUDED.disposals)
            RETURNING 1
        )
        SELECT count(*) FROM written
        """,
        [v.city_code for v in volumes],
        [v.apt_code for v in volumes],
        [v.day for v in volumes],
        [v.quantity_kg for v in volumes],
        [v.disposals for v in volumes],
    )
    return changed


async def daily_totals(
    pool: asyncpg.Pool, district_code: str, first: date, last: date
) -> list[DayTotal]:
    """The Korean days from `first` to `last` on which the district has a collected pickup
    or an imported RFID volume, in order."""
    rows = await pool.fetch(
        """
        WITH hub AS (
            SELECT (p.collected_at AT TIME ZONE 'Asia/Seoul')::date AS day,
                   coalesce(sum(p.weight_kg), 0) AS kg, count(*) AS pickups,
                   count(DISTINCT s.generator_id) AS businesses
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
        SELECT day, coalesce(hub.kg, 0) AS hub_kg, coalesce(hub.pickups, 0) AS hub_pickups,
               coalesce(hub.businesses, 0) AS hub_businesses,
               coalesce(rfid.kg, 0) AS rfid_kg, coalesce(rfid.disposals, 0) AS rfid_disposals
        FROM hub FULL JOIN rfid USING (day)
        ORDER BY day
        """,
        district_code,
        first,
        last,
    )
    return [
        DayTotal(
            row["day"],
            row["hub_kg"],
            row["hub_pickups"],
            row["hub_businesses"],
            row["rfid_kg"],
            row["rfid_disposals"],
        )
        for row in rows
    ]
