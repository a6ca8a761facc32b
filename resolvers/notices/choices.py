"""A citizen's choices: which notice types reach them through which app.

A choice is per citizen, app and type (and district, for types addressed by district).
Withdrawing dates the choice rather than deleting it; the delivery worker checks the
choice again when it claims each delivery, so a withdrawal stops what is still queued.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from resolvers.notices import catalogue, errors


@dataclass(frozen=True, slots=True)
class Choice:
    user_id: uuid.UUID
    client_id: str
    type_code: str
    district_code: str | None
    chosen_at: datetime
    withdrawn_at: datetime | None

    @property
    def active(self) -> bool:
        return self.withdrawn_at is None


async def opt_in(
    conn: asyncpg.Connection | asyncpg.Pool,
    user_id: uuid.UUID,
    client_id: str,
    type_codes: Sequence[str],
    district_code: str | None = None,
) -> list[Choice]:
    """Choose these types through this app (again, if withdrawn before). Safe to repeat."""
    wanted = list(dict.fromkeys(type_codes))
    kinds = {kind.type_code: kind for kind in await catalogue.types(conn)}
    for code in wanted:
        if code not in kinds:
            raise errors.UnknownNoticeType(f"no notice type {code!r}", argument="types")
        if kinds[code].by_district and district_code is None:
            raise errors.DistrictRequired(
                f"notice type {code} is sent per district: give districtCode",
                argument="districtCode",
            )
    if district_code is not None and not (len(district_code) == 5 and district_code.isdigit()):
        raise errors.DistrictRequired("districtCode is a 5-digit code", argument="districtCode")
    rows = await conn.fetch(
        "INSERT INTO notice_choices (user_id, client_id, type_code, district_code)"
        " SELECT $1, $2, code, CASE WHEN t.by_district THEN $4::text END"
        " FROM unnest($3::text[]) AS code JOIN notice_types t ON t.type_code = code"
        " ON CONFLICT (user_id, client_id, type_code) DO UPDATE"
        " SET district_code = EXCLUDED.district_code,"
        "     chosen_at = CASE WHEN notice_choices.withdrawn_at IS NULL"
        "                      THEN notice_choices.chosen_at ELSE now() END,"
        "     withdrawn_at = NULL"
        " RETURNING *",
        user_id,
        client_id,
        wanted,
        district_code,
    )
    return sorted((Choice(**dict(row)) for row in rows), key=lambda c: c.type_code)


async def withdraw(
    conn: asyncpg.Connection | asyncpg.Pool,
    user_id: uuid.UUID,
    client_id: str,
    type_codes: Sequence[str] | None,
) -> list[Choice]:
    """Withdraw these choices (None: every one made through this app). Safe to repeat;
    returns the choices as they now are."""
    rows = await conn.fetch(
        "UPDATE notice_choices SET withdrawn_at = coalesce(withdrawn_at, now())"
        " WHERE user_id = $1 AND client_id = $2 AND ($3::text[] IS NULL OR type_code = ANY($3))"
        " RETURNING *",
        user_id,
        client_id,
        None if type_codes is None else list(type_codes),
    )
    return sorted((Choice(**dict(row)) for row in rows), key=lambda c: c.type_code)


async def of_citizen(
    conn: asyncpg.Connection | asyncpg.Pool,
    user_id: uuid.UUID,
    client_id: str | None,
    *,
    include_withdrawn: bool = False,
) -> list[Choice]:
    """A citizen's choices through one app (None: every app)."""
    rows = await conn.fetch(
        "SELECT * FROM notice_choices WHERE user_id = $1 AND ($2::text IS NULL OR client_id = $2)"
        " AND ($3 OR withdrawn_at IS NULL) ORDER BY client_id, type_code",
        user_id,
        client_id,
        include_withdrawn,
    )
    return [Choice(**dict(row)) for row in rows]
