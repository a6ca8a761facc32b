"""The tax system's feed of issued bills, read into `bill.created` payment events.

`position` is how far the hub has read the feed (per tax adapter; 0 before the first
read). `record` writes a page's events to the outbox and moves the position past them in
one transaction, and only if the position is still the one the page was read from: a
second worker that read the same page at the same time records nothing, and a worker
stopped between two pages goes on after the last one recorded. Each bill is announced
once (a feed the tax system renumbered is read again from its start: those repeats carry
the same 전자납부번호, by which consumers drop them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from resolvers.payments import outbox

BILL_CREATED = "bill.created"


async def position(conn: asyncpg.Connection | asyncpg.Pool, adapter: str) -> int:
    found: int | None = await conn.fetchval(
        "SELECT after_seq FROM payment_bill_feed WHERE adapter = $1", adapter
    )
    return found or 0


async def record(
    pool: asyncpg.Pool,
    adapter: str,
    read_from: int,
    to: int,
    bills: Sequence[tuple[str, dict[str, Any]]],
) -> int | None:
    """Announce `bills` (read after `read_from`: each its 전자납부번호, the event's key,
    and what the event says) and move the position to `to`; how many were announced, or
    None if another worker moved the position first."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO payment_bill_feed (adapter) VALUES ($1) ON CONFLICT DO NOTHING", adapter
        )
        moved = await conn.fetchval(
            "UPDATE payment_bill_feed SET after_seq = $3, read_at = now()"
            " WHERE adapter = $1 AND after_seq = $2 RETURNING true",
            adapter,
            read_from,
            to,
        )
        if not moved:
            return None
        await outbox.add_many(conn, [(BILL_CREATED, epay_no, data) for epay_no, data in bills])
    return len(bills)
