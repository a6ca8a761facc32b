"""Payments, refunds, receipt notices and webhooks in PostgreSQL: every state change of a
payment is one transaction with its ledger postings and its outbox event.

The callers (schema/payments/flow.py) make the outside calls between these steps; each
step is written so that running it twice, or after another process ran it, does nothing
more (conditional updates on the current status, ledger postings unique per reference).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import asyncpg
import msgspec

from resolvers.payments import ledger, outbox

KST = ZoneInfo("Asia/Seoul")
LIVE = ("requested", "confirming", "unknown", "confirmed", "partially_refunded")
IN_FLIGHT = ("requested", "confirming", "unknown")
PAID = ("confirmed", "partially_refunded", "refunded")
BeforeCommit = Callable[[], None]


class Payment(msgspec.Struct, frozen=True, kw_only=True):
    payment_id: uuid.UUID
    order_id: str
    source: str
    reference: str | None
    epay_no: str | None
    tax_kind: int
    tax_no: str
    district_code: str
    item_code: str
    item: str
    payer_masked: str
    due_date: date
    base_amount: int
    late_fee: int
    amount: int
    channel: str
    client_id: str
    user_id: uuid.UUID | None
    terminal_id: str | None
    collect_day: date
    status: str
    payment_key: str | None
    method: str | None
    card_number: str | None
    approve_no: str | None
    failure_code: str | None
    failure_message: str | None
    refunded_amount: int
    receipt_no: str | None
    requested_at: datetime
    confirmed_at: datetime | None
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        return dict(msgspec.to_builtins(self))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Payment:
        return msgspec.convert(data, cls)


class Refund(msgspec.Struct, frozen=True, kw_only=True):
    refund_id: uuid.UUID
    payment_id: uuid.UUID
    amount: int
    reason: str
    status: str
    requested_by: str
    automatic: bool
    transaction_key: str | None
    failure_code: str | None
    failure_message: str | None
    requested_at: datetime
    done_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return dict(msgspec.to_builtins(self))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Refund:
        return msgspec.convert(data, cls)


class NewPayment(msgspec.Struct, frozen=True, kw_only=True):
    epay_no: str | None
    tax_kind: int
    tax_no: str
    district_code: str
    item_code: str
    item: str
    payer_masked: str
    due_date: date
    base_amount: int
    channel: str
    client_id: str
    user_id: uuid.UUID | None
    terminal_id: str | None
    source: str = "tax_bill"
    reference: str | None = None


class LiveBillPayment(Exception):
    """The bill already has a payment that holds or may hold its money."""

    def __init__(self, existing: Payment | None) -> None:
        super().__init__("the bill has an open or completed payment")
        self.existing = existing


def korea_today() -> date:
    return datetime.now(KST).date()


def _payment(row: asyncpg.Record | None) -> Payment | None:
    return None if row is None else Payment(**dict(row))


def _refund(row: asyncpg.Record | None) -> Refund | None:
    return None if row is None else Refund(**dict(row))


async def _event(conn: asyncpg.Connection, event: str, payment: Payment) -> None:
    await outbox.add(
        conn,
        f"payment.{event}",
        str(payment.payment_id),
        {
            "payment_id": str(payment.payment_id),
            "order_id": payment.order_id,
            "source": payment.source,
            "reference": payment.reference,
            "epay_no": payment.epay_no,
            "status": payment.status,
            "amount": payment.amount,
            "refunded_amount": payment.refunded_amount,
            "tax_kind": payment.tax_kind,
            "district_code": payment.district_code,
            "client_id": payment.client_id,
            "terminal_id": payment.terminal_id,
            "receipt_no": payment.receipt_no,
            "failure_code": payment.failure_code,
        },
    )


# A statement's change and its event in one: `announced(changed, event, $n)` is a CTE
# writing `payment.<event>` for each row of the CTE `changed` (the event's data as
# `_event` makes it), the envelope $n from outbox.envelope, and waking the relays.
_EVENT_DATA = """jsonb_build_object(
    'payment_id', p.payment_id, 'order_id', p.order_id, 'source', p.source,
    'reference', p.reference, 'epay_no', p.epay_no, 'status', p.status, 'amount', p.amount,
    'refunded_amount', p.refunded_amount, 'tax_kind', p.tax_kind,
    'district_code', p.district_code, 'client_id', p.client_id,
    'terminal_id', p.terminal_id, 'receipt_no', p.receipt_no, 'failure_code', p.failure_code)"""


def _announced(changed: str, event: str, envelope: str) -> str:
    return f"""announced AS (
    INSERT INTO payment_outbox (event_id, event_type, key, payload, created_at)
    SELECT ({envelope}::jsonb ->> 'event_id')::uuid, 'payment.{event}', p.payment_id::text,
           {envelope}::jsonb || jsonb_build_object('data', {_EVENT_DATA}), clock_timestamp()
      FROM {changed} AS p
    RETURNING pg_notify('{outbox.CHANNEL}', '')
)"""


def _envelope(event: str, payment_id: uuid.UUID) -> dict[str, Any]:
    return outbox.envelope(f"payment.{event}", str(payment_id), {})[1]


# Reading


async def by_id(conn: asyncpg.Connection | asyncpg.Pool, payment_id: uuid.UUID) -> Payment | None:
    return _payment(await conn.fetchrow("SELECT * FROM payments WHERE payment_id = $1", payment_id))


async def by_order(conn: asyncpg.Connection | asyncpg.Pool, order_id: str) -> Payment | None:
    return _payment(await conn.fetchrow("SELECT * FROM payments WHERE order_id = $1", order_id))


async def by_receipt(conn: asyncpg.Connection | asyncpg.Pool, receipt_no: str) -> Payment | None:
    row = await conn.fetchrow("SELECT * FROM payments WHERE receipt_no = $1", receipt_no)
    return _payment(row)


async def live_of(conn: asyncpg.Connection, new: NewPayment) -> Payment | None:
    """The payment that holds (or may yet hold) the money of what `new` would pay."""
    row = await conn.fetchrow(
        "SELECT * FROM payments WHERE status = ANY($1) AND (epay_no = $2"
        " OR (source = $3 AND reference = $4))",
        list(LIVE),
        new.epay_no,
        new.source,
        new.reference,
    )
    return _payment(row)


async def listing(
    pool: asyncpg.Pool,
    *,
    client_id: str | None = None,
    user_id: uuid.UUID | None = None,
    terminal_id: str | None = None,
    district_code: str | None = None,
    status: str | None = None,
    day: date | None = None,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 100,
) -> list[Payment]:
    """Payments newest first (the id breaks ties, so the order is total), filtered by
    whichever arguments are given; `after` is the (requested_at, payment_id) of the last
    payment of the page before."""
    since, last = after if after else (None, None)
    rows = await pool.fetch(
        "SELECT * FROM payments"
        " WHERE ($1::text IS NULL OR client_id = $1)"
        " AND ($2::text IS NULL OR terminal_id = $2)"
        " AND ($3::text IS NULL OR district_code = $3)"
        " AND ($4::text IS NULL OR status = $4)"
        " AND ($5::date IS NULL OR collect_day = $5)"
        " AND ($7::uuid IS NULL OR user_id = $7)"
        " AND ($8::timestamptz IS NULL OR (requested_at, payment_id) < ($8, $9::uuid))"
        " ORDER BY requested_at DESC, payment_id DESC LIMIT $6",
        client_id,
        terminal_id,
        district_code,
        status,
        day,
        limit,
        user_id,
        since,
        last,
    )
    return [Payment(**dict(row)) for row in rows]


async def refunds_of(
    conn: asyncpg.Connection | asyncpg.Pool, payment_id: uuid.UUID
) -> list[Refund]:
    rows = await conn.fetch(
        "SELECT * FROM payment_refunds WHERE payment_id = $1 ORDER BY requested_at", payment_id
    )
    return [Refund(**dict(row)) for row in rows]


async def refund_by_id(
    conn: asyncpg.Connection | asyncpg.Pool, refund_id: uuid.UUID
) -> Refund | None:
    return _refund(
        await conn.fetchrow("SELECT * FROM payment_refunds WHERE refund_id = $1", refund_id)
    )


# Collecting


async def expire_requests(
    conn: asyncpg.Connection, window: timedelta, of: NewPayment | None = None
) -> list[Payment]:
    """Requested payments never confirmed within the gateway's window (all, or those of
    what `of` would pay): expired, the bill free again. Only requests never sent to the
    gateway expire (a confirm in flight is resolved by the recovery job instead)."""
    async with conn.transaction():
        rows = await conn.fetch(
            "UPDATE payments SET status = 'expired', updated_at = now()"
            " WHERE status = 'requested' AND requested_at < now() - $1::interval"
            " AND ($2 OR epay_no = $3 OR (source = $4 AND reference = $5)) RETURNING *",
            window,
            of is None,
            of.epay_no if of else None,
            of.source if of else None,
            of.reference if of else None,
        )
        expired = [Payment(**dict(row)) for row in rows]
        for payment in expired:
            await _event(conn, "expired", payment)
    return expired


class OverLimit(Exception):
    """The terminal is disabled (or gone), or the payment would take it past its daily
    limit: what it collected on the day, and its limit."""

    def __init__(self, daily_limit: int | None, active: bool, used: int) -> None:
        super().__init__("the terminal may not collect this payment")
        self.daily_limit = daily_limit
        self.active = active
        self.used = used


async def open_payment(
    conn: asyncpg.Connection,
    new: NewPayment,
    amount: int,
    window: timedelta,
    *,
    check_limit: bool = False,
) -> Payment:
    """Store the requested payment; LiveBillPayment if the bill has a live one; with
    `check_limit`, only within its terminal's daily limit (OverLimit otherwise). A request
    abandoned past `window` is expired first, only when it is in the way (the recovery job
    expires the rest)."""
    try:
        return await _insert(conn, new, amount, check_limit)
    except LiveBillPayment:
        if not await expire_requests(conn, window, new):
            raise
    return await _insert(conn, new, amount, check_limit)


# The requested payment, its event and, for a terminal's collection, its daily limit in
# one statement (one transaction). The terminal is locked (payment_terminal_day, 0030)
# until the statement's end, so concurrent collections of one terminal check its daily
# total one after the other. ON CONFLICT, not a unique violation: the conflict is the
# bill's (or charge's) live payment, read by the caller.
_OPEN = f"""
WITH day AS MATERIALIZED (
    SELECT * FROM payment_terminal_day($17, $18) WHERE $21
), opened AS (
    INSERT INTO payments (payment_id, order_id, epay_no, tax_kind, tax_no,
        district_code, item_code, item, payer_masked, due_date, base_amount,
        late_fee, amount, channel, client_id, user_id, terminal_id, collect_day,
        source, reference, status)
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
           $19, $20, 'requested'
     WHERE NOT $21
        OR EXISTS (SELECT FROM day WHERE day.active AND day.used + $13 <= day.daily_limit)
    ON CONFLICT DO NOTHING
    RETURNING *
), {_announced("opened", "requested", "$22")}
SELECT opened.*, day.daily_limit AS day_limit, day.active AS day_active, day.used AS day_used
  FROM (VALUES (true)) AS one LEFT JOIN day ON true LEFT JOIN opened ON true
"""


async def _insert(
    conn: asyncpg.Connection, new: NewPayment, amount: int, check_limit: bool
) -> Payment:
    payment_id = uuid.uuid4()
    row = dict(
        await conn.fetchrow(
            _OPEN,
            payment_id,
            f"ieum-{uuid.uuid4().hex}",
            new.epay_no,
            new.tax_kind,
            new.tax_no,
            new.district_code,
            new.item_code,
            new.item,
            new.payer_masked,
            new.due_date,
            new.base_amount,
            amount - new.base_amount,
            amount,
            new.channel,
            new.client_id,
            new.user_id,
            new.terminal_id,
            korea_today(),
            new.source,
            new.reference,
            check_limit,
            _envelope("requested", payment_id),
        )
    )
    limit, active, used = row.pop("day_limit"), row.pop("day_active"), row.pop("day_used")
    if row["payment_id"] is not None:
        return Payment(**row)
    if check_limit and (limit is None or not active or used + amount > limit):
        raise OverLimit(limit, bool(active), used or 0)
    raise LiveBillPayment(await live_of(conn, new))


# Confirming


async def begin_confirm(
    conn: asyncpg.Connection, order_id: str, client_id: str, amount: int, payment_key: str
) -> Payment | None:
    """requested → confirming with the gateway's payment key, stored before the call, for
    the client's payment of this order and amount. None if there is no such payment in
    `requested` (another request got there first, or the order or amount is wrong: the
    caller reads the payment to tell which)."""
    row = await conn.fetchrow(
        "UPDATE payments SET status = 'confirming', payment_key = $4, updated_at = now()"
        " WHERE order_id = $1 AND client_id = $2 AND amount = $3 AND status = 'requested'"
        " RETURNING *",
        order_id,
        client_id,
        amount,
        payment_key,
    )
    return _payment(row)


async def mark_unknown(conn: asyncpg.Connection, payment_id: uuid.UUID) -> Payment | None:
    """The confirm's answer was lost: the outcome is unknown until resolved."""
    async with conn.transaction():
        payment = _payment(
            await conn.fetchrow(
                "UPDATE payments SET status = 'unknown', updated_at = now()"
                " WHERE payment_id = $1 AND status = 'confirming' RETURNING *",
                payment_id,
            )
        )
        if payment is not None:
            await _event(conn, "unknown", payment)
    return payment


# The confirmation in one statement: the payment confirmed with its receipt number, its
# ledger posting (ledger.py's, booked once by its reference), the receipt notice the tax
# system is owed (for its own bills only) and its event, all only when this statement
# confirmed it; else the payment as another confirmed it (payment_now, 0036: read after
# this statement's wait for the other's lock, which its own snapshot is from before).
_CONFIRMED = f"""
WITH confirmed AS (
    UPDATE payments SET status = 'confirmed', payment_key = $2, method = $3,
           card_number = $4, approve_no = $5, confirmed_at = $6, updated_at = now(),
           failure_code = NULL, failure_message = NULL,
           receipt_no = district_code || '-' || to_char($6 AT TIME ZONE 'Asia/Seoul',
               'YYYYMMDD') || '-' || lpad(nextval('payment_receipt_seq')::text, 8, '0')
     WHERE payment_id = $1
       AND status IN ('requested', 'confirming', 'unknown', 'failed', 'expired')
    RETURNING *
), booked AS (
    INSERT INTO ledger_transactions (kind, reference, payment_id, memo)
    SELECT $8, $9, $10, $11 FROM confirmed
    ON CONFLICT (reference) DO NOTHING
    RETURNING transaction_id
), entries AS (
    INSERT INTO ledger_entries (transaction_id, account, debit, credit)
    SELECT booked.transaction_id, e.account, e.debit, e.credit
      FROM booked, unnest($12::text[], $13::bigint[], $14::bigint[]) AS e (account, debit, credit)
), owed AS (
    INSERT INTO payment_tax_notices (notice_id, payment_id, kind, receipt_no, amount)
    SELECT $7, payment_id, 'receipt', receipt_no, amount FROM confirmed
     WHERE source = 'tax_bill'
), {_announced("confirmed", "confirmed", "$15")}
SELECT true AS booked_now, * FROM confirmed
UNION ALL
SELECT false, * FROM payment_now($1) WHERE NOT EXISTS (SELECT FROM confirmed)
"""


class Confirmation(NamedTuple):
    payment: Payment
    booked_now: bool  # False: confirmed already, by another step


async def finish_confirmed(
    conn: asyncpg.Connection,
    payment: Payment,
    *,
    payment_key: str,
    method: str,
    card_number: str,
    approve_no: str,
    approved_at: datetime,
    before_commit: BeforeCommit | None = None,
) -> Confirmation:
    """The gateway approved: confirmed, booked, receipted, owed a receipt notice and
    announced, in one statement. Whoever learns it first (the answer, a lookup, the
    webhook) books it; the others find it done, as it is now (booked_now False).
    `payment` is the payment as last read (what is booked, its amount, kind and
    district, never changes). `before_commit` (fault drills) runs between the statement
    and its commit, in a transaction of its own."""
    payment_id = payment.payment_id
    posting = ledger.payment_posting(
        payment_id, payment.tax_kind, payment.district_code, payment.amount
    )
    arguments = (
        payment_id,
        payment_key,
        method,
        card_number,
        approve_no,
        approved_at,
        uuid.uuid4(),
        *posting.arguments(),
        _envelope("confirmed", payment_id),
    )
    if before_commit is None:
        row = await conn.fetchrow(_CONFIRMED, *arguments)
    else:
        async with conn.transaction():
            row = await conn.fetchrow(_CONFIRMED, *arguments)
            if row is not None and row["booked_now"]:
                before_commit()
    assert row is not None, f"no payment {payment_id}"
    fields = dict(row)
    booked_now = fields.pop("booked_now")
    confirmed = Payment(**fields)
    assert not booked_now or confirmed.receipt_no is not None
    return Confirmation(confirmed, booked_now)


async def finish_failed(
    conn: asyncpg.Connection, payment_id: uuid.UUID, code: str, message: str
) -> Payment | None:
    """The gateway refused (or has no such payment): failed, the bill free again."""
    async with conn.transaction():
        payment = _payment(
            await conn.fetchrow(
                "UPDATE payments SET status = 'failed', failure_code = $2, failure_message = $3,"
                " updated_at = now() WHERE payment_id = $1"
                " AND status IN ('requested', 'confirming', 'unknown') RETURNING *",
                payment_id,
                code,
                message,
            )
        )
        if payment is not None:
            await _event(conn, "failed", payment)
    return payment


async def unsettled(conn: asyncpg.Connection, stale: timedelta, limit: int = 100) -> list[Payment]:
    """Payments whose confirm outcome is unknown, or in flight for longer than `stale`."""
    rows = await conn.fetch(
        "SELECT * FROM payments WHERE status = 'unknown'"
        " OR (status = 'confirming' AND updated_at < now() - $1::interval)"
        " ORDER BY updated_at LIMIT $2",
        stale,
        limit,
    )
    return [Payment(**dict(row)) for row in rows]


# Refunds


class RefundRefused(Exception):
    def __init__(self, reason: str, refundable: int) -> None:
        super().__init__(reason)
        self.refundable = refundable


async def open_refund(
    conn: asyncpg.Connection,
    payment_id: uuid.UUID,
    amount: int | None,
    reason: str,
    requested_by: str,
    *,
    automatic: bool = False,
) -> tuple[Payment, Refund]:
    """Store a requested refund of `amount` (all that is left when None), checked against
    what is refundable with refunds in flight counted. RefundRefused says why not."""
    async with conn.transaction():
        payment = _payment(
            await conn.fetchrow(
                "SELECT * FROM payments WHERE payment_id = $1 FOR UPDATE", payment_id
            )
        )
        if payment is None or payment.status not in ("confirmed", "partially_refunded"):
            status = payment.status if payment else "missing"
            raise RefundRefused(f"a {status} payment cannot be refunded", 0)
        in_flight = await conn.fetchval(
            "SELECT coalesce(sum(amount), 0) FROM payment_refunds"
            " WHERE payment_id = $1 AND status IN ('requested', 'unknown')",
            payment_id,
        )
        refundable = payment.amount - payment.refunded_amount - int(in_flight)
        wanted = refundable if amount is None else amount
        if wanted <= 0 or wanted > refundable:
            raise RefundRefused(f"{wanted:,} won asked, {refundable:,} won refundable", refundable)
        row = await conn.fetchrow(
            "INSERT INTO payment_refunds (refund_id, payment_id, amount, reason, status,"
            " requested_by, automatic) VALUES ($1, $2, $3, $4, 'requested', $5, $6) RETURNING *",
            uuid.uuid4(),
            payment_id,
            wanted,
            reason,
            requested_by,
            automatic,
        )
    return payment, Refund(**dict(row))


async def mark_refund_unknown(conn: asyncpg.Connection, refund_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE payment_refunds SET status = 'unknown' WHERE refund_id = $1"
        " AND status = 'requested'",
        refund_id,
    )


async def fail_refund(
    conn: asyncpg.Connection, refund_id: uuid.UUID, code: str, message: str
) -> Refund | None:
    row = await conn.fetchrow(
        "UPDATE payment_refunds SET status = 'failed', failure_code = $2, failure_message = $3,"
        " done_at = now() WHERE refund_id = $1 AND status IN ('requested', 'unknown')"
        " RETURNING *",
        refund_id,
        code,
        message,
    )
    return _refund(row)


async def finish_refund(
    conn: asyncpg.Connection, refund_id: uuid.UUID, transaction_key: str
) -> tuple[Payment, Refund]:
    """The gateway cancelled: the refund done, the payment's refunded amount raised, the
    reversal booked, the event written and (unless the tax system never took the receipt)
    a cancel notice owed, in one transaction. Idempotent."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "UPDATE payment_refunds SET status = 'done', transaction_key = $2, done_at = now()"
            " WHERE refund_id = $1 AND status IN ('requested', 'unknown') RETURNING *",
            refund_id,
            transaction_key,
        )
        if row is None:
            refund = await refund_by_id(conn, refund_id)
            assert refund is not None
            payment = await by_id(conn, refund.payment_id)
            assert payment is not None
            return payment, refund
        refund = Refund(**dict(row))
        payment_row = await conn.fetchrow(
            "UPDATE payments SET refunded_amount = refunded_amount + $2,"
            " status = CASE WHEN refunded_amount + $2 = amount THEN 'refunded'"
            " ELSE 'partially_refunded' END, updated_at = now()"
            " WHERE payment_id = $1 RETURNING *",
            refund.payment_id,
            refund.amount,
        )
        payment = Payment(**dict(payment_row))
        await ledger.refund_done(
            conn,
            refund.refund_id,
            payment.payment_id,
            payment.tax_kind,
            payment.district_code,
            refund.amount,
        )
        await _event(conn, "refunded", payment)
        if not refund.automatic and payment.source == "tax_bill":
            assert payment.receipt_no is not None
            await conn.execute(
                "INSERT INTO payment_tax_notices (notice_id, payment_id, refund_id, kind,"
                " receipt_no, amount) VALUES ($1, $2, $3, 'cancel', $4, $5)",
                uuid.uuid4(),
                payment.payment_id,
                refund.refund_id,
                f"{payment.receipt_no}-C{refund.refund_id.hex[:8]}",
                refund.amount,
            )
    return payment, refund


async def unsettled_refunds(
    conn: asyncpg.Connection, stale: timedelta, limit: int = 100
) -> list[Refund]:
    rows = await conn.fetch(
        "SELECT * FROM payment_refunds WHERE status = 'unknown'"
        " OR (status = 'requested' AND requested_at < now() - $1::interval)"
        " ORDER BY requested_at LIMIT $2",
        stale,
        limit,
    )
    return [Refund(**dict(row)) for row in rows]


# Receipt notices to the tax system


class Notice(msgspec.Struct, frozen=True, kw_only=True):
    notice_id: uuid.UUID
    payment_id: uuid.UUID
    refund_id: uuid.UUID | None
    kind: str
    receipt_no: str
    amount: int
    attempts: int
    epay_no: str
    approve_no: str | None
    occurred_at: datetime


async def claim_notices(
    conn: asyncpg.Connection, lease: timedelta, limit: int = 20
) -> list[Notice]:
    """Pending notices that are due, leased to this worker for `lease` (another worker
    takes them over if this one dies before answering)."""
    rows = await conn.fetch(
        "WITH due AS (SELECT notice_id FROM payment_tax_notices c"
        "  WHERE status = 'pending' AND next_attempt_at <= now()"
        "  AND (kind = 'receipt' OR EXISTS (SELECT FROM payment_tax_notices r"
        "   WHERE r.payment_id = c.payment_id AND r.kind = 'receipt'"
        "   AND r.status = 'accepted'))"  # a cancel only once the receipt is recorded
        "  ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
        " UPDATE payment_tax_notices n SET next_attempt_at = now() + $1::interval,"
        " attempts = n.attempts + 1 FROM due, payments p"
        " WHERE n.notice_id = due.notice_id AND p.payment_id = n.payment_id"
        " RETURNING n.notice_id, n.payment_id, n.refund_id, n.kind, n.receipt_no, n.amount,"
        " n.attempts, p.epay_no, p.approve_no,"
        " coalesce((SELECT r.done_at FROM payment_refunds r WHERE r.refund_id = n.refund_id),"
        " p.confirmed_at) AS occurred_at",
        lease,
        limit,
    )
    return [Notice(**dict(row)) for row in rows]


async def answer_notices(
    conn: asyncpg.Connection, answers: list[tuple[uuid.UUID, str, str]]
) -> None:
    """Store the tax system's answers (notice id, status, detail) to pending notices."""
    await conn.execute(
        "UPDATE payment_tax_notices n SET status = a.status, last_error = nullif(a.detail, ''),"
        " answered_at = now()"
        " FROM unnest($1::uuid[], $2::text[], $3::text[]) AS a (notice_id, status, detail)"
        " WHERE n.notice_id = a.notice_id AND n.status = 'pending'",
        [notice_id for notice_id, _, _ in answers],
        [status for _, status, _ in answers],
        [detail for _, _, detail in answers],
    )


async def retry_notice(
    conn: asyncpg.Connection, notice_id: uuid.UUID, after: timedelta, error: str
) -> None:
    await conn.execute(
        "UPDATE payment_tax_notices SET next_attempt_at = now() + $2::interval, last_error = $3"
        " WHERE notice_id = $1 AND status = 'pending'",
        notice_id,
        after,
        error,
    )


async def notices_of(
    conn: asyncpg.Connection | asyncpg.Pool, payment_id: uuid.UUID
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT kind, receipt_no, amount, status, attempts, last_error, answered_at"
            " FROM payment_tax_notices WHERE payment_id = $1 ORDER BY created_at",
            payment_id,
        )
    )


# Webhooks


async def record_webhook(
    conn: asyncpg.Connection,
    event_id: str,
    event_type: str,
    payment_key: str,
    status: str,
    outcome: str,
) -> bool:
    """Record a webhook event with what it did; False if it was seen before (a
    redelivery: a concurrent one waits for the first's commit)."""
    inserted = await conn.fetchval(
        "INSERT INTO payment_webhook_events (event_id, event_type, payment_key, status, outcome)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true",
        event_id,
        event_type,
        payment_key,
        status,
        outcome,
    )
    return bool(inserted)


# A webhook of a payment no longer in flight (unknown, or settled: the common case, the
# confirm's answer came first) recorded with what it did, nothing, in one statement; the
# outcomes are flow._outcome's. A payment in flight is returned as read (no outcome,
# nothing recorded): the caller applies the event to it.
_SETTLED_WEBHOOK = """
WITH found AS (
    SELECT p.status, p.payment_key, p AS payment FROM (VALUES (true)) AS one
      LEFT JOIN payments p ON p.order_id = $1
), settled AS (
    SELECT CASE WHEN status IS NULL THEN 'unknown_order'
                WHEN payment_key <> $4 THEN 'payment_key_mismatch'
                ELSE 'no_change' END AS outcome
      FROM found WHERE status IS NULL OR status <> ALL($6::text[])
), recorded AS (
    INSERT INTO payment_webhook_events (event_id, event_type, payment_key, status, outcome)
    SELECT $2, $3, $4, $5, outcome FROM settled
    ON CONFLICT DO NOTHING
    RETURNING true
)
SELECT settled.outcome, EXISTS (SELECT FROM recorded) AS first,
       CASE WHEN settled.outcome IS NULL THEN found.payment END AS payment
  FROM found LEFT JOIN settled ON true
"""


async def record_settled_webhook(
    conn: asyncpg.Connection,
    order_id: str,
    event_id: str,
    event_type: str,
    payment_key: str,
    status: str,
) -> tuple[str, bool] | Payment:
    """Record a webhook of a payment not in flight: (its outcome, False if it was seen
    before); the payment as read if it is in flight (nothing recorded)."""
    row = await conn.fetchrow(
        _SETTLED_WEBHOOK, order_id, event_id, event_type, payment_key, status, list(IN_FLIGHT)
    )
    if row["outcome"] is not None:
        return row["outcome"], row["first"]
    return Payment(**dict(row["payment"]))  # sent only when in flight
