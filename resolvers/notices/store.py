"""Notices as accepted: checked against the catalogue, rendered, and fanned out to the
deliveries of every citizen's chosen app, all in one transaction.

A notice is accepted once per dedupe key (the agency's own id, or the source event's id):
a resubmission answers the notice accepted first, and a different notice under a key
already used is refused. Recipients are the active choices at acceptance: the citizen's
(a notice to one citizen), a district's (types sent per district) or everyone's who chose
the type. A notice nobody chose is kept with no deliveries, which its report shows.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from resolvers.notices import catalogue, errors, quiet

CHANNEL = "notice_deliveries"  # NOTIFY: deliveries are due (wakes the workers at commit)


@dataclass(frozen=True, slots=True)
class NewNotice:
    """A notice to accept. `dedupe_key` says when two submissions are the same notice."""

    type_code: str
    dedupe_key: str
    source: str  # 'agency', or the publishing domain's name
    params: dict[str, Any] = field(default_factory=dict)
    user_id: uuid.UUID | None = None  # None: every citizen who chose the type (of the district)
    district_code: str | None = None
    agency: str | None = None  # who publishes: must own the type (None: the type's owner)
    agency_notice_id: str | None = None
    payment_url: str | None = None

    @staticmethod
    def from_agency(agency: str, agency_notice_id: str, **fields: Any) -> NewNotice:
        return NewNotice(
            dedupe_key=f"{agency}/{agency_notice_id}",
            source="agency",
            agency=agency,
            agency_notice_id=agency_notice_id,
            **fields,
        )

    @staticmethod
    def from_event(domain: str, event_id: str, **fields: Any) -> NewNotice:
        return NewNotice(dedupe_key=f"event/{domain}/{event_id}", source=domain, **fields)


@dataclass(frozen=True, slots=True)
class Notice:
    notice_id: uuid.UUID
    dedupe_key: str
    type_code: str
    agency: str
    agency_notice_id: str | None
    source: str
    user_id: uuid.UUID | None
    district_code: str | None
    params: dict[str, Any]
    title_ko: str
    title_en: str
    body_ko: str
    body_en: str
    urgent: bool
    payment_url: str | None
    recipients: int
    accepted_at: datetime


@dataclass(frozen=True, slots=True)
class Accepted:
    notice: Notice
    created: bool  # False: the same notice had been accepted before


@dataclass(frozen=True, slots=True)
class QuietHours:
    day_starts: int
    day_ends: int


_FAN_OUT = """
WITH made AS (
    INSERT INTO notice_deliveries
        (event_id, notice_id, client_id, user_id, type_code, release_at, next_attempt_at)
    SELECT gen_random_uuid(), $1, c.client_id, c.user_id, c.type_code, $5, $5
      FROM notice_choices c
     WHERE c.type_code = $2 AND c.withdrawn_at IS NULL
       AND ($3::uuid IS NULL OR c.user_id = $3)
       AND ($4::text IS NULL OR c.district_code = $4)
     ORDER BY c.user_id, c.client_id
    RETURNING 1
)
SELECT count(*) FROM made
"""


async def publish(pool: asyncpg.Pool, new: NewNotice, hours: QuietHours) -> Accepted:
    """Accept `new` once: stored with its deliveries, or the notice accepted before."""
    async with pool.acquire() as conn, conn.transaction():
        kind = await catalogue.by_code(conn, new.type_code)
        _check(kind, new)
        text = catalogue.render(kind, new.params)
        now = datetime.now(UTC)
        row = await conn.fetchrow(
            "INSERT INTO notices (notice_id, dedupe_key, type_code, agency, agency_notice_id,"
            " source, user_id, district_code, params, title_ko, title_en, body_ko, body_en,"
            " urgent, payment_url, recipients, accepted_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 0, $16)"
            " ON CONFLICT (dedupe_key) DO NOTHING RETURNING *",
            uuid.uuid4(),
            new.dedupe_key,
            kind.type_code,
            kind.agency,
            new.agency_notice_id,
            new.source,
            new.user_id,
            new.district_code,
            json.dumps(new.params),
            text.title_ko,
            text.title_en,
            text.body_ko,
            text.body_en,
            kind.urgent,
            new.payment_url,
            now,
        )
        if row is None:
            return Accepted(await _same_as_before(conn, new), created=False)
        release = quiet.release_at(now, kind.urgent, hours.day_starts, hours.day_ends)
        district = new.district_code if kind.by_district else None
        count = await conn.fetchval(
            _FAN_OUT, row["notice_id"], kind.type_code, new.user_id, district, release
        )
        row = await conn.fetchrow(
            "UPDATE notices SET recipients = $2 WHERE notice_id = $1 RETURNING *",
            row["notice_id"],
            count,
        )
        if count:
            await conn.execute("SELECT pg_notify($1, '')", CHANNEL)
        return Accepted(_notice(row), created=True)


def _check(kind: catalogue.NoticeType, new: NewNotice) -> None:
    if new.agency is not None and new.agency != kind.agency:
        raise errors.NotYourAgency(
            f"notice type {kind.type_code} belongs to agency {kind.agency}, not {new.agency}"
        )
    if new.payment_url is not None:
        if not kind.payment_link:
            raise errors.PaymentLinkNotAllowed(
                f"notice type {kind.type_code} may not carry a payment link",
                argument="paymentUrl",
            )
        if urlsplit(new.payment_url).scheme != "https":
            raise errors.PaymentLinkNotAllowed(
                "a payment link is an https:// URL", argument="paymentUrl"
            )
    if kind.by_district and new.district_code is None:
        raise errors.DistrictRequired(
            f"notice type {kind.type_code} is sent per district: give districtCode",
            argument="districtCode",
        )


async def _same_as_before(conn: asyncpg.Connection, new: NewNotice) -> Notice:
    row = await conn.fetchrow("SELECT * FROM notices WHERE dedupe_key = $1", new.dedupe_key)
    assert row is not None  # notices are never deleted
    before = _notice(row)
    same = (
        before.type_code == new.type_code
        and before.user_id == new.user_id
        and before.district_code == new.district_code
        and before.params == new.params
        and before.payment_url == new.payment_url
    )
    if not same:
        raise errors.NoticeConflict(
            f"notice {new.agency_notice_id or new.dedupe_key} was accepted before with"
            " different content: give a new notice id"
        )
    return before


def _notice(row: asyncpg.Record) -> Notice:
    fields = dict(row)
    if isinstance(fields["params"], str):  # a connection without the pool's jsonb codec
        fields["params"] = json.loads(fields["params"])
    return Notice(**fields)


async def by_id(conn: asyncpg.Connection | asyncpg.Pool, notice_id: uuid.UUID) -> Notice | None:
    row = await conn.fetchrow("SELECT * FROM notices WHERE notice_id = $1", notice_id)
    return None if row is None else _notice(row)


async def by_agency_id(
    conn: asyncpg.Connection | asyncpg.Pool, agency: str, agency_notice_id: str
) -> Notice | None:
    row = await conn.fetchrow(
        "SELECT * FROM notices WHERE dedupe_key = $1", f"{agency}/{agency_notice_id}"
    )
    return None if row is None else _notice(row)


async def publisher_agency(conn: asyncpg.Connection | asyncpg.Pool, client_id: str) -> str | None:
    """The agency a client publishes for, if a city operator registered it."""
    found: str | None = await conn.fetchval(
        "SELECT agency FROM notice_publishers WHERE client_id = $1", client_id
    )
    return found


async def register_publisher(
    conn: asyncpg.Connection | asyncpg.Pool, client_id: str, agency: str
) -> None:
    """Let `client_id` publish for `agency` (replacing its agency before). Safe to repeat."""
    try:
        await conn.execute(
            "INSERT INTO notice_publishers (client_id, agency) VALUES ($1, $2)"
            " ON CONFLICT (client_id) DO UPDATE SET agency = EXCLUDED.agency",
            client_id,
            agency,
        )
    except asyncpg.ForeignKeyViolationError:
        raise errors.UnknownAgency(f"no agency {agency!r} in the catalogue") from None
