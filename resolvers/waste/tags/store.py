"""All SQL of tags and their keys (tables in migrations/0010_waste_tags.sql)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

# Keys


async def keys(db: asyncpg.Pool | asyncpg.Connection) -> list[asyncpg.Record]:
    return await db.fetch("SELECT * FROM waste_tag_keys ORDER BY key_id")


async def current_key(
    db: asyncpg.Pool | asyncpg.Connection, algorithm: str
) -> asyncpg.Record | None:
    return await db.fetchrow(
        "SELECT * FROM waste_tag_keys WHERE algorithm = $1 AND retired_at IS NULL", algorithm
    )


async def add_key(
    pool: asyncpg.Pool, algorithm: str, public_key: bytes | None, sealed: bytes, *, retire: bool
) -> asyncpg.Record | None:
    """Insert a key that makes new tags from now on, retiring the current one if `retire`;
    None when there is a current key and `retire` is false (another process made it)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('waste_tag_keys'))")
        if retire:
            await conn.execute(
                "UPDATE waste_tag_keys SET retired_at = now()"
                " WHERE algorithm = $1 AND retired_at IS NULL",
                algorithm,
            )
        elif await current_key(conn, algorithm) is not None:
            return None
        return await conn.fetchrow(
            "INSERT INTO waste_tag_keys (algorithm, public_key, private_key)"
            " VALUES ($1, $2, $3) RETURNING *",
            algorithm,
            public_key,
            sealed,
        )


async def revoke_key(pool: asyncpg.Pool, key_id: int) -> asyncpg.Record | None:
    """Revoke (and so retire) a key; None if there is no such key."""
    return await pool.fetchrow(
        "UPDATE waste_tag_keys SET revoked_at = coalesce(revoked_at, now()),"
        " retired_at = coalesce(retired_at, now()) WHERE key_id = $1 RETURNING *",
        key_id,
    )


async def bins_of_key(pool: asyncpg.Pool, key_id: int) -> list[uuid.UUID]:
    """Bins whose live tag was made with key `key_id` (they need new tags once it is revoked)."""
    rows = await pool.fetch(
        "SELECT DISTINCT bin_id FROM waste_tags WHERE key_id = $1 AND revoked_at IS NULL",
        key_id,
    )
    return [row["bin_id"] for row in rows]


async def labelled(pool: asyncpg.Pool, bin_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """The bins among `bin_ids` with a live QR label."""
    rows = await pool.fetch(
        "SELECT DISTINCT bin_id FROM waste_tags"
        " WHERE bin_id = ANY($1) AND kind = 'qr' AND revoked_at IS NULL",
        list(bin_ids),
    )
    return {row["bin_id"] for row in rows}


# Bins to tag


async def bins(pool: asyncpg.Pool, bin_ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
    """The bins (in service) among `bin_ids`, with their site's district."""
    return await pool.fetch(
        "SELECT b.bin_id, b.site_id, b.volume_litres, b.label, s.district_code"
        " FROM waste_bins b JOIN waste_sites s USING (site_id)"
        " WHERE b.bin_id = ANY($1) AND b.retired_at IS NULL ORDER BY b.created_at, b.bin_id",
        list(bin_ids),
    )


async def site_bins(pool: asyncpg.Pool, site_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await pool.fetch(
        "SELECT bin_id FROM waste_bins WHERE site_id = $1 AND retired_at IS NULL"
        " ORDER BY created_at, bin_id",
        site_id,
    )
    return [row["bin_id"] for row in rows]


# Tags


async def insert_tags(pool: asyncpg.Pool, tags: Sequence[tuple[object, ...]]) -> None:
    """Insert (tag_id, bin_id, kind, key_id, uid) rows in one transaction, each revoking
    the live tag of the same kind on its bin (a new label replaces the old one)."""
    async with pool.acquire() as conn, conn.transaction():
        for tag_id, bin_id, kind, key_id, uid in tags:
            await conn.execute(
                "UPDATE waste_tags SET revoked_at = now(), revoke_reason = 'replaced'"
                " WHERE revoked_at IS NULL AND ((bin_id = $1 AND kind = $2) OR uid = $3)",
                bin_id,
                kind,
                uid,
            )
            await conn.execute(
                "INSERT INTO waste_tags (tag_id, bin_id, kind, key_id, uid)"
                " VALUES ($1, $2, $3, $4, $5)",
                tag_id,
                bin_id,
                kind,
                key_id,
                uid,
            )


async def revoke_tags(
    pool: asyncpg.Pool,
    reason: str,
    tag_ids: Sequence[uuid.UUID] = (),
    bin_ids: Sequence[uuid.UUID] = (),
) -> list[uuid.UUID]:
    """Revoke the live tags named, or all live tags of the bins named; the ids revoked."""
    rows = await pool.fetch(
        "UPDATE waste_tags SET revoked_at = now(), revoke_reason = $3"
        " WHERE revoked_at IS NULL AND (tag_id = ANY($1) OR bin_id = ANY($2)) RETURNING tag_id",
        list(tag_ids),
        list(bin_ids),
        reason,
    )
    return [row["tag_id"] for row in rows]


async def revoked_qr_tags(pool: asyncpg.Pool) -> set[uuid.UUID]:
    rows = await pool.fetch(
        "SELECT tag_id FROM waste_tags WHERE revoked_at IS NOT NULL AND kind = 'qr'"
    )
    return {row["tag_id"] for row in rows}


# Accept read $3 of the live tag $1 made from key $2: only if it is above the last one
# accepted and the key is not revoked, in one statement, so two taps showing the same
# counter (a copy, a replay) are never both accepted. No row otherwise. A scan's statement
# runs it as one of its own (resolvers/waste/scans.py), with the same parameters.
ACCEPT_READ = """
UPDATE waste_tags t SET last_counter = $3
WHERE t.uid = $1 AND t.key_id = $2 AND t.revoked_at IS NULL AND t.last_counter < $3
  AND NOT EXISTS (SELECT FROM waste_tag_keys k
                  WHERE k.key_id = t.key_id AND k.revoked_at IS NOT NULL)
RETURNING t.tag_id, t.bin_id
"""


async def advance_counter(
    pool: asyncpg.Pool, uid: str, key_id: int, counter: int
) -> asyncpg.Record | None:
    """ACCEPT_READ, with the bin's district."""
    return await pool.fetchrow(
        f"WITH accepted AS ({ACCEPT_READ}) SELECT a.tag_id, a.bin_id, s.district_code"
        " FROM accepted a JOIN waste_bins b USING (bin_id) JOIN waste_sites s USING (site_id)",
        uid,
        key_id,
        counter,
    )


async def nfc_tag(pool: asyncpg.Pool, uid: str, key_id: int) -> asyncpg.Record | None:
    """The newest tag `uid` of key `key_id` and its key's state: why a tap was refused."""
    return await pool.fetchrow(
        "SELECT t.tag_id, t.revoked_at, t.last_counter, k.revoked_at AS key_revoked_at"
        " FROM waste_tags t JOIN waste_tag_keys k USING (key_id)"
        " WHERE t.uid = $1 AND t.key_id = $2 ORDER BY t.issued_at DESC LIMIT 1",
        uid,
        key_id,
    )
