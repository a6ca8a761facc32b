"""Districts' pickup fees: won per litre of bin volume or per kilogram weighed, for bins of
one size or any size, from a date to a date.

The tariff of a bin on a day is the district's tariff in effect that day for the bin's
size, else for any size; the latest to take effect wins. A new tariff ends the open-ended
one it follows (same district and bin size) the day it starts; other overlaps are refused.
"""

from __future__ import annotations

import math
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import asyncpg
import msgspec

from hub.core.errors import BadUserInput
from resolvers.waste import errors

# A kg tariff is paid before weighing on an estimate: a full bin of wet food waste, taken
# as 0.9 kg per litre (mostly water, a little lighter). The scale's reading settles it.
KG_PER_LITRE = Decimal("0.9")
BASES = ("litre", "kg")


class Tariff(msgspec.Struct, frozen=True, kw_only=True):
    tariff_id: int
    district_code: str
    basis: str
    unit_price: int
    bin_volume_litres: int | None
    effective_from: date
    effective_to: date | None


class NewTariff(msgspec.Struct, frozen=True, kw_only=True):
    district_code: str
    basis: str
    unit_price: int
    bin_volume_litres: int | None
    effective_from: date
    effective_to: date | None


class Quote(msgspec.Struct, frozen=True, kw_only=True):
    """What a pickup of one bin costs on a day; `estimated_kg` is set for kg tariffs."""

    tariff: Tariff
    volume_litres: int
    amount: int
    estimated_kg: Decimal | None


def price(tariff: Tariff, volume_litres: int) -> int:
    """What a pickup of a bin costs when requested: its volume priced per litre, or the
    estimated weight of a full bin per kilogram."""
    if tariff.basis == "litre":
        return tariff.unit_price * volume_litres
    return kg_fee(tariff.unit_price, estimated_kg(volume_litres))


def kg_fee(unit_price: int, kg: Decimal) -> int:
    """The fee of `kg` kilograms, in whole won (halves up)."""
    return int((kg * unit_price).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def estimated_kg(volume_litres: int) -> Decimal:
    return Decimal(math.ceil(volume_litres * KG_PER_LITRE * 10)) / 10


def quote(tariff: Tariff, volume_litres: int) -> Quote:
    return Quote(
        tariff=tariff,
        volume_litres=volume_litres,
        amount=price(tariff, volume_litres),
        estimated_kg=estimated_kg(volume_litres) if tariff.basis == "kg" else None,
    )


async def tariff_for(
    conn: asyncpg.Connection | asyncpg.Pool, district: str, volume_litres: int, day: date
) -> Tariff | None:
    """The district's tariff for a bin of this size on `day`, or None."""
    row = await conn.fetchrow(
        "SELECT * FROM waste_tariffs WHERE district_code = $1 AND effective_from <= $3"
        " AND (effective_to IS NULL OR effective_to > $3)"
        " AND (bin_volume_litres IS NULL OR bin_volume_litres = $2)"
        " ORDER BY bin_volume_litres IS NULL, effective_from DESC, tariff_id DESC LIMIT 1",
        district,
        volume_litres,
        day,
    )
    return None if row is None else Tariff(**dict(row))


async def quote_for(
    conn: asyncpg.Connection | asyncpg.Pool, district: str, volume_litres: int, day: date
) -> Quote:
    """The quote of a bin on a day; NoTariff when the district has none in effect."""
    tariff = await tariff_for(conn, district, volume_litres, day)
    if tariff is None:
        raise errors.NoTariff(
            f"district {district} has no tariff for a {volume_litres} L bin on {day}",
            districtCode=district,
        )
    return quote(tariff, volume_litres)


async def tariffs(
    conn: asyncpg.Connection | asyncpg.Pool, district: str | None, day: date | None
) -> list[Tariff]:
    """The tariffs of a district (None: all), those in effect on `day` (None: every one)."""
    rows = await conn.fetch(
        "SELECT * FROM waste_tariffs WHERE ($1::text IS NULL OR district_code = $1)"
        " AND ($2::date IS NULL OR (effective_from <= $2"
        " AND (effective_to IS NULL OR effective_to > $2)))"
        " ORDER BY district_code, bin_volume_litres NULLS FIRST, effective_from",
        district,
        day,
    )
    return [Tariff(**dict(row)) for row in rows]


def _check(new: NewTariff) -> None:
    if not (len(new.district_code) == 5 and new.district_code.isdigit()):
        raise BadUserInput("districtCode is a 5-digit 시군구 code", argument="districtCode")
    if new.basis not in BASES:
        raise BadUserInput("basis is litre or kg", argument="basis")
    if new.unit_price <= 0:
        raise BadUserInput("unitPrice is a positive number of won", argument="unitPrice")
    if new.bin_volume_litres is not None and new.bin_volume_litres <= 0:
        raise BadUserInput("binVolumeLitres is positive (or null: any size)")
    if new.effective_to is not None and new.effective_to <= new.effective_from:
        raise BadUserInput("effectiveTo comes after effectiveFrom", argument="effectiveTo")


async def set_tariff(conn: asyncpg.Connection, new: NewTariff) -> Tariff:
    """Store a tariff, ending the open-ended one it follows; OverlappingTariff otherwise.
    Setting the same tariff again (a retry) returns the stored one."""
    _check(new)
    async with conn.transaction():
        # One writer per district at a time: two new tariffs cannot both pass the check.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('waste_tariffs:' || $1))", new.district_code
        )
        same = await conn.fetchrow(
            "SELECT * FROM waste_tariffs WHERE district_code = $1 AND basis = $2"
            " AND unit_price = $3 AND bin_volume_litres IS NOT DISTINCT FROM $4"
            " AND effective_from = $5 AND effective_to IS NOT DISTINCT FROM $6",
            *msgspec.structs.astuple(new),
        )
        if same is not None:
            return Tariff(**dict(same))
        await conn.execute(
            "UPDATE waste_tariffs SET effective_to = $3 WHERE district_code = $1"
            " AND bin_volume_litres IS NOT DISTINCT FROM $2 AND effective_to IS NULL"
            " AND effective_from < $3",
            new.district_code,
            new.bin_volume_litres,
            new.effective_from,
        )
        clash = await conn.fetchval(
            "SELECT tariff_id FROM waste_tariffs WHERE district_code = $1"
            " AND bin_volume_litres IS NOT DISTINCT FROM $2"
            " AND daterange(effective_from, effective_to) && daterange($3, $4) LIMIT 1",
            new.district_code,
            new.bin_volume_litres,
            new.effective_from,
            new.effective_to,
        )
        if clash is not None:
            raise errors.OverlappingTariff(
                f"tariff {clash} of district {new.district_code} already covers part of"
                f" {new.effective_from}..{new.effective_to or '(open)'}",
                tariffId=clash,
            )
        row = await conn.fetchrow(
            "INSERT INTO waste_tariffs (district_code, basis, unit_price, bin_volume_litres,"
            " effective_from, effective_to) VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
            new.district_code,
            new.basis,
            new.unit_price,
            new.bin_volume_litres,
            new.effective_from,
            new.effective_to,
        )
    return Tariff(**dict(row))
