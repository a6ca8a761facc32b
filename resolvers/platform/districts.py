"""Districts: SQL, the per-request DataLoaders, and loading the reference data."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from strawberry.dataloader import DataLoader

from hub.core.errors import BadUserInput
from resolvers.platform import district_source

log = logging.getLogger(__name__)

CODE = re.compile(r"^[0-9]{5}$")
PROVINCE_CODE = re.compile(r"^[0-9]{2}$")
_COLUMNS = "code, name, name_en, province, province_code, province_en, legacy_codes, source"


@dataclass(frozen=True)
class DistrictRow:
    code: str
    name: str
    name_en: str
    province: str
    province_code: str
    province_en: str
    legacy_codes: list[str]
    source: str


def check_code(code: str) -> str:
    if not CODE.match(code):
        raise BadUserInput(
            f"district code must be 5 digits (e.g. '11110' for 종로구), got {code!r}",
            argument="code",
        )
    return code


async def list_districts(pool: asyncpg.Pool, province: str | None) -> list[DistrictRow]:
    """All districts, or those of one province (by Korean or English name, or 2-digit code)."""
    if province is None:
        rows = await pool.fetch(f"SELECT {_COLUMNS} FROM districts ORDER BY code")
        return [DistrictRow(**row) for row in rows]
    asked = province.strip()
    if PROVINCE_CODE.match(asked):
        column = "province_code"
    elif asked.isascii():
        column, asked = "lower(province_en)", asked.lower()
    else:
        column = "province"
    # One indexed column per kind of name (migrations/0024), not an OR over all three.
    rows = await pool.fetch(
        f"SELECT {_COLUMNS} FROM districts WHERE {column} = $1 ORDER BY code", asked
    )
    if not rows:
        known = await pool.fetch("SELECT DISTINCT province FROM districts ORDER BY 1")
        raise BadUserInput(
            f"unknown province {province!r}; use one of: "
            + ", ".join(row["province"] for row in known),
            argument="province",
        )
    return [DistrictRow(**row) for row in rows]


def district_loader(pool: asyncpg.Pool) -> DataLoader[str, DistrictRow | None]:
    """District by current or legacy code; None for a code that names no district."""

    async def load(codes: Sequence[str]) -> list[DistrictRow | None]:
        # Current codes by the primary key; former codes (rare: old links, old data) by
        # the GIN index, only for codes that are no district's current one. So a current
        # code names its current holder even if another district once had it.
        wanted = list(codes)
        rows = await pool.fetch(
            f"SELECT {_COLUMNS} FROM districts WHERE code = ANY($1::text[])", wanted
        )
        by_code = {row["code"]: DistrictRow(**row) for row in rows}
        former = [code for code in wanted if code not in by_code]
        if former:
            rows = await pool.fetch(
                f"SELECT {_COLUMNS} FROM districts WHERE legacy_codes && $1::text[]", former
            )
            for district in (DistrictRow(**row) for row in rows):
                for old in district.legacy_codes:
                    by_code.setdefault(old, district)
        return [by_code.get(code) for code in codes]

    return DataLoader(load_fn=load)


def boundary_loader(pool: asyncpg.Pool) -> DataLoader[str, dict[str, Any]]:
    """GeoJSON boundaries, loaded apart from the rows since they are large (~30 kB each)."""

    async def load(codes: Sequence[str]) -> list[dict[str, Any]]:
        rows = await pool.fetch(
            "SELECT code, boundary FROM districts WHERE code = ANY($1::text[])", list(codes)
        )
        by_code = {row["code"]: row["boundary"] for row in rows}
        return [by_code[code] for code in codes]

    return DataLoader(load_fn=load)


async def boundary(pool: asyncpg.Pool, code: str) -> dict[str, Any] | None:
    """A district's GeoJSON boundary by its current or a legacy code; None if unknown.
    Other domains ask this instead of reading the districts table."""
    found: dict[str, Any] | None = await pool.fetchval(
        "SELECT boundary FROM districts WHERE code = $1 OR $1 = ANY(legacy_codes)", code
    )
    return found


async def load_reference_data(conn: asyncpg.Connection) -> int:
    """Bring the districts table up to the bundled source; return how many rows changed."""
    current = await conn.fetchval(
        "SELECT count(*) FROM districts WHERE source = $1", district_source.SOURCE
    )
    districts = district_source.load()
    if current == len(districts):
        return 0
    async with conn.transaction():
        await conn.executemany(
            "INSERT INTO districts (code, name, name_en, province, province_code, province_en,"
            " legacy_codes, boundary, source) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            " ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name,"
            " name_en = EXCLUDED.name_en, province = EXCLUDED.province,"
            " province_code = EXCLUDED.province_code, province_en = EXCLUDED.province_en,"
            " legacy_codes = EXCLUDED.legacy_codes, boundary = EXCLUDED.boundary,"
            " source = EXCLUDED.source, updated_at = now()",
            [
                (
                    d.code,
                    d.name,
                    d.name_en,
                    d.province,
                    d.province_code,
                    d.province_en,
                    list(d.legacy_codes),
                    d.boundary,
                    district_source.SOURCE,
                )
                for d in districts
            ],
        )
        await conn.execute(
            "DELETE FROM districts WHERE NOT (code = ANY($1::text[]))",
            [d.code for d in districts],
        )
    log.info("platform.districts.loaded count=%d", len(districts))
    return len(districts)
