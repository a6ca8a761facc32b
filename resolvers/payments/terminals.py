"""Officials' phones enrolled as card terminals: each one an OAuth client of its own.

A terminal authenticates with `private_key_jwt` (its private key never leaves the phone;
the hub keeps the public JWK set), holds only `payments:collect`, is bound to an official
and a department of one district, and has a daily limit. Disabling it takes effect on the
next request: the client is disabled, its tokens revoked, and every payments call checks
the terminal row as well.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, NamedTuple

import asyncpg
import msgspec

from auth import clients, store
from resolvers.payments import errors
from resolvers.payments.scopes import COLLECT


class Terminal(msgspec.Struct, frozen=True, kw_only=True):
    terminal_id: str
    district_code: str
    department: str
    official: str
    daily_limit: int
    enrolled_by: str
    enrolled_at: datetime
    disabled_at: datetime | None
    disabled_reason: str | None

    @property
    def active(self) -> bool:
        return self.disabled_at is None


def _terminal(row: asyncpg.Record | None) -> Terminal | None:
    return None if row is None else Terminal(**dict(row))


def usable(terminal: Terminal | None) -> Terminal:
    """The terminal a payments call comes from, if it is enrolled and active."""
    if terminal is None:
        raise errors.TerminalNotEnrolled(
            "this client is not an enrolled terminal (see `ieum payments enroll`)"
        )
    if not terminal.active:
        raise errors.TerminalDisabled(
            f"this terminal was disabled: {terminal.disabled_reason or 'no reason given'}"
        )
    return terminal


def from_row(row: asyncpg.Record | None) -> Terminal | None:
    """A terminal read as a composite value (payment_terminals): None, or a row of NULLs
    (plpgsql's SELECT INTO that found none), is no terminal."""
    return None if row is None or row["terminal_id"] is None else Terminal(**dict(row))


async def enroll(
    pool: asyncpg.Pool,
    *,
    district_code: str,
    department: str,
    official: str,
    daily_limit: int,
    jwks: dict[str, Any],
    enrolled_by: str,
) -> Terminal:
    """Register the phone's public keys as a new client and bind it to its district."""
    client = await clients.create(
        pool,
        name=f"수납 단말기 · {department} {official}",
        scope_names=[COLLECT.name],
        jwks=jwks,
    )
    row = await pool.fetchrow(
        "INSERT INTO payment_terminals (terminal_id, district_code, department, official,"
        " daily_limit, enrolled_by) VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
        client.client_id,
        district_code,
        department,
        official,
        daily_limit,
        enrolled_by,
    )
    return Terminal(**dict(row))


async def disable(pool: asyncpg.Pool, terminal_id: str, reason: str) -> Terminal | None:
    """Stop a terminal at once (a lost phone): its row, its client and its tokens."""
    row = await pool.fetchrow(
        "UPDATE payment_terminals SET disabled_at = coalesce(disabled_at, now()),"
        " disabled_reason = coalesce(disabled_reason, $2) WHERE terminal_id = $1 RETURNING *",
        terminal_id,
        reason,
    )
    if row is not None:
        await store.disable_client(pool, terminal_id)
    return _terminal(row)


async def get(conn: asyncpg.Connection | asyncpg.Pool, terminal_id: str) -> Terminal | None:
    row = await conn.fetchrow("SELECT * FROM payment_terminals WHERE terminal_id = $1", terminal_id)
    return _terminal(row)


class DayUse(NamedTuple):
    daily_limit: int
    active: bool
    used: int  # won collected or being collected on the day, refunds not deducted


async def day_use(conn: asyncpg.Connection, terminal_id: str, day: date) -> DayUse | None:
    """The terminal's limit and what it collected on `day`, with the terminal locked until
    the caller's transaction ends (its daily total is checked and raised under this lock,
    so concurrent collections cannot pass the limit together). None: no such terminal."""
    row = await conn.fetchrow(
        "SELECT daily_limit, active, used FROM payment_terminal_day($1, $2)", terminal_id, day
    )
    return None if row is None else DayUse(row["daily_limit"], row["active"], row["used"])


async def listing(pool: asyncpg.Pool, district_code: str | None = None) -> list[Terminal]:
    rows = await pool.fetch(
        "SELECT * FROM payment_terminals WHERE $1::text IS NULL OR district_code = $1"
        " ORDER BY enrolled_at",
        district_code,
    )
    return [Terminal(**dict(row)) for row in rows]
