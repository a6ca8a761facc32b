"""Collector companies: OAuth partners (client credentials, `waste:collect`) that city
staff allow in some districts. A company's id is its OAuth client id, so its phones act
as it with the tokens they get, and a token's client is the company.

Where several companies serve one district, city staff give sites to one of them
(`assign_site`): such a site is that company's alone (its route, its scans); a site given
to none is any company's of its district."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg
import msgspec

from auth import store as clients
from hub.core.errors import BadUserInput
from resolvers.waste import errors, scopes


class Collector(msgspec.Struct, frozen=True, kw_only=True):
    collector_id: str
    name: str
    districts: list[str]
    created_at: datetime


def _districts(codes: Sequence[str]) -> list[str]:
    found = sorted(set(codes))
    if not found:
        raise BadUserInput("a collector serves at least one district", argument="districts")
    for code in found:
        if not (len(code) == 5 and code.isascii() and code.isdigit()):
            raise BadUserInput(f"{code!r} is not a 5-digit 시군구 code", argument="districts")
    return found


async def register(
    pool: asyncpg.Pool, client_id: str, name: str, districts: Sequence[str]
) -> Collector:
    """Allow an OAuth client as a collector company in `districts`; registering it again
    replaces its name and districts (the city moves companies between districts)."""
    codes = _districts(districts)
    if not name.strip():
        raise BadUserInput("a collector company has a name", argument="name")
    client = await clients.get_client(pool, client_id)
    if client is None or client["disabled_at"] is not None:
        raise BadUserInput(f"no OAuth client {client_id!r} in use", argument="clientId")
    if scopes.COLLECT.name not in client["scopes"]:
        raise BadUserInput(
            f"client {client_id!r} may not ask for {scopes.COLLECT.name}: register it with"
            " that scope first",
            argument="clientId",
        )
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "INSERT INTO waste_collectors (collector_id, name, districts) VALUES ($1, $2, $3)"
            " ON CONFLICT (collector_id) DO UPDATE SET name = $2, districts = $3 RETURNING *",
            client_id,
            name.strip(),
            codes,
        )
        # Moved out of a district, the company no longer holds that district's sites.
        await conn.execute(
            "DELETE FROM waste_site_collectors a USING waste_sites s"
            " WHERE a.site_id = s.site_id AND a.collector_id = $1"
            " AND NOT s.district_code = ANY($2)",
            client_id,
            codes,
        )
    return Collector(**dict(row))


async def assign_site(
    pool: asyncpg.Pool, site_id: uuid.UUID, collector_id: str | None
) -> str | None:
    """Give the site to a company serving its district, or (None) to none of them."""
    district = await pool.fetchval(
        "SELECT district_code FROM waste_sites WHERE site_id = $1", site_id
    )
    if district is None:
        raise BadUserInput(f"no site {site_id}", argument="siteId")
    if collector_id is None:
        await pool.execute("DELETE FROM waste_site_collectors WHERE site_id = $1", site_id)
        return None
    company = await by_id(pool, collector_id)
    if company is None:
        raise BadUserInput(f"no collector company {collector_id!r}", argument="collectorId")
    if district not in company.districts:
        raise errors.OutsideCollectorDistricts(
            f"{company.name} does not collect in {district}, the site's district:"
            " registerCollector it there first"
        )
    await pool.execute(
        "INSERT INTO waste_site_collectors (site_id, collector_id) VALUES ($1, $2)"
        " ON CONFLICT (site_id) DO UPDATE SET collector_id = $2, assigned_at = now()",
        site_id,
        collector_id,
    )
    return collector_id


async def of_site(conn: asyncpg.Connection | asyncpg.Pool, site_id: uuid.UUID) -> str | None:
    """The company the site is given to, if any."""
    found: str | None = await conn.fetchval(
        "SELECT collector_id FROM waste_site_collectors WHERE site_id = $1", site_id
    )
    return found


async def by_id(conn: asyncpg.Connection | asyncpg.Pool, collector_id: str) -> Collector | None:
    row = await conn.fetchrow(
        "SELECT * FROM waste_collectors WHERE collector_id = $1", collector_id
    )
    return None if row is None else Collector(**dict(row))


async def of_client(conn: asyncpg.Connection | asyncpg.Pool, client_id: str | None) -> Collector:
    """The company a token's client is; NotACollector when the city has not registered it."""
    found = None if client_id is None else await by_id(conn, client_id)
    if found is None:
        raise errors.NotACollector(
            "this client is not a registered collector company: city staff register it"
            " (registerCollector) for its districts"
        )
    return found


async def listing(conn: asyncpg.Connection | asyncpg.Pool) -> list[Collector]:
    rows = await conn.fetch("SELECT * FROM waste_collectors ORDER BY name, collector_id")
    return [Collector(**dict(row)) for row in rows]
