"""Notices as accepted: checked against the catalogue, rendered, and fanned out to the
deliveries of every citizen's chosen app, all in one transaction.

A notice is accepted once per dedupe key (the agency's own id, or the source event's id):
a resubmission answers the notice accepted first, and a different notice under a key
already used is refused. Recipients are the active choices at acceptance: the citizen's
(a notice to one citizen), a district's (types sent per district) or everyone's who chose
the type. A notice nobody chose is kept with no deliveries, which its report shows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from hub.core.db import CLIENT_GRACE_SECONDS
from resolvers.notices import catalogue, errors, quiet

CHANNEL = "notice_deliveries"  # NOTIFY: deliveries are due (wakes the workers at commit)
# The time limit of a publish's transaction, each statement (the pool's is 10 s): one
# statement makes every delivery of a notice, and 100,000 of them took 8-12 s on a loaded
# 2-core machine, so a district's warning was refused by the pool's limit.
PUBLISH_SECONDS = 120.0
# How an agency's notice came: its system's signed route (reports go back to it through
# the adapter) or a publisher's GraphQL call (reports are read through GraphQL).
AGENCY, GRAPHQL = "agency", "graphql"


@dataclass(frozen=True, slots=True)
class NewNotice:
    """A notice to accept. `dedupe_key` says when two submissions are the same notice."""

    type_code: str
    dedupe_key: str
    source: str  # AGENCY, GRAPHQL, or the publishing domain's name
    params: dict[str, Any] = field(default_factory=dict)
    user_id: uuid.UUID | None = None  # None: every citizen who chose the type (of the district)
    client_id: str | None = None  # only through this app (a booking's): None, every app chosen
    district_code: str | None = None
    agency: str | None = None  # who publishes: must own the type (None: the type's owner)
    agency_notice_id: str | None = None
    payment_url: str | None = None
    citizen_ref: str | None = None  # an agency's pseudonym of the citizen (see citizens.py)
    params_en: dict[str, Any] | None = None  # English values where they differ
    payment: dict[str, Any] | None = None  # {"amount", "epayNo", "dueDate"}: a bill to pay
    expires_at: datetime | None = None
    urgent: bool | None = None  # None: as the type says

    @staticmethod
    def from_agency(
        agency: str, agency_notice_id: str, source: str = AGENCY, **fields: Any
    ) -> NewNotice:
        return NewNotice(
            dedupe_key=f"{agency}/{agency_notice_id}",
            source=source,
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
    citizen_ref: str | None
    params_en: dict[str, Any] | None
    payment: dict[str, Any] | None
    expires_at: datetime | None


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
       AND ($6::text IS NULL OR c.client_id = $6)
     ORDER BY c.user_id, c.client_id
    RETURNING 1
)
SELECT count(*) FROM made
"""


async def publish(pool: asyncpg.Pool, new: NewNotice, hours: QuietHours) -> Accepted:
    """Accept `new` once: stored with its deliveries, or the notice accepted before."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(  # local: back to the pool's limit at commit or rollback
            "SELECT set_config('statement_timeout', $1, true)", f"{PUBLISH_SECONDS * 1000:.0f}"
        )
        kind = await catalogue.by_code(conn, new.type_code)
        check(kind, new)
        text = catalogue.render(kind, new.params, new.params_en)
        urgent = kind.urgent if new.urgent is None else new.urgent
        user_id = new.user_id
        if user_id is None and new.citizen_ref is not None:
            user_id = await conn.fetchval(
                "SELECT user_id FROM notice_citizen_refs WHERE citizen_ref = $1", new.citizen_ref
            )
        now = datetime.now(UTC)
        row = await conn.fetchrow(
            "INSERT INTO notices (notice_id, dedupe_key, type_code, agency, agency_notice_id,"
            " source, user_id, district_code, params, title_ko, title_en, body_ko, body_en,"
            " urgent, payment_url, recipients, accepted_at, citizen_ref, params_en, payment,"
            " expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,"
            " $15, 0, $16, $17, $18, $19, $20)"
            " ON CONFLICT (dedupe_key) DO NOTHING RETURNING *",
            uuid.uuid4(),
            new.dedupe_key,
            kind.type_code,
            kind.agency,
            new.agency_notice_id,
            new.source,
            user_id,
            new.district_code,
            new.params,
            text.title_ko,
            text.title_en,
            text.body_ko,
            text.body_en,
            urgent,
            new.payment_url,
            now,
            new.citizen_ref,
            new.params_en,
            new.payment,
            new.expires_at,
        )
        if row is None:
            return Accepted(await _same_as_before(conn, new), created=False)
        count = 0
        if user_id is not None or new.citizen_ref is None:  # an unknown pseudonym: nobody
            release = quiet.release_at(now, urgent, hours.day_starts, hours.day_ends)
            district = new.district_code if kind.by_district else None
            count = await conn.fetchval(
                _FAN_OUT,
                row["notice_id"],
                kind.type_code,
                user_id,
                district,
                release,
                new.client_id,
                timeout=PUBLISH_SECONDS + CLIENT_GRACE_SECONDS,
            )
        row = await conn.fetchrow(
            "UPDATE notices SET recipients = $2 WHERE notice_id = $1 RETURNING *",
            row["notice_id"],
            count,
        )
        if count:
            await conn.execute("SELECT pg_notify($1, '')", CHANNEL)
        elif new.source == AGENCY:
            await conn.execute(
                "INSERT INTO notice_reports (notice_id, kind, detail, occurred_at)"
                " VALUES ($1, 'failed', $2, now())"
                " ON CONFLICT (notice_id, kind) WHERE event_id IS NULL DO NOTHING",
                row["notice_id"],
                "the citizen has linked no app for notices"
                if user_id is None
                else f"no app of the citizen takes {kind.type_code}",
            )
        return Accepted(_notice(row), created=True)


def check(kind: catalogue.NoticeType, new: NewNotice) -> None:
    """Refuse what the type does not allow (the text is checked by rendering it)."""
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
    if new.payment is not None and not kind.payment_link:
        raise errors.PaymentLinkNotAllowed(
            f"notice type {kind.type_code} may not carry a payment", argument="payment"
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
        and before.citizen_ref == new.citizen_ref
        and before.params_en == new.params_en
        and before.payment == new.payment
    )
    if not same:
        raise errors.NoticeConflict(
            f"notice {new.agency_notice_id or new.dedupe_key} was accepted before with"
            " different content: give a new notice id"
        )
    return before


def _notice(row: asyncpg.Record) -> Notice:
    return Notice(**dict(row))


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


async def agency_of_org(conn: asyncpg.Connection | asyncpg.Pool, org_code: str) -> str | None:
    """The catalogue's agency whose systems sign in with this 행정표준코드."""
    found: str | None = await conn.fetchval(
        "SELECT agency FROM notice_agencies WHERE org_code = $1", org_code
    )
    return found
