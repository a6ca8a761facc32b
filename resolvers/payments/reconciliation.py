"""Daily reconciliation: the hub's book of a Korean day against the gateway's settlement file.

The hub's side of day D is every payment confirmed on D (Korea time) that still counts
as taken (confirmed, partially or fully refunded since) and every refund done on D, as a
negative amount. The gateway's side is its settlement lines for D: payments by payment
key, cancels by transaction key. Each line and each booking is matched, or listed with
an explanation: missing in the hub, missing at the gateway, or an amount mismatch.

A run is stored for finance staff (a rerun of a day replaces it) and the matched lines
are booked in the ledger (`settlement:<transaction key>`, once, however often the day is
run); what does not match is left for a person to resolve, and booked by the run after.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Protocol
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg

from resolvers.payments import ledger

KST = ZoneInfo("Asia/Seoul")
PAYMENT, CANCEL = "PAYMENT", "CANCEL"
MISSING_IN_HUB = "missing_in_hub"
MISSING_AT_GATEWAY = "missing_at_gateway"
AMOUNT_MISMATCH = "amount_mismatch"
BOOKED = ("confirmed", "partially_refunded", "refunded")
# Why a payment the gateway settled is not booked, by the hub's status, and what to do.
_NOT_BOOKED = {
    "requested": "its confirmation never reached the hub; the recovery job should resolve it",
    "confirming": "its confirmation did not finish; the recovery job should resolve it",
    "unknown": "the gateway's answer was lost; the recovery job should resolve it",
    "failed": "the card was charged all the same; refund it or confirm the payment",
    "expired": "the card was charged all the same; refund it or confirm the payment",
}


class SettlementLine(Protocol):
    """A line of the gateway's settlement file (the fields of adapters' SettlementRow)."""

    @property
    def payment_key(self) -> str: ...
    @property
    def order_id(self) -> str: ...
    @property
    def transaction_key(self) -> str: ...
    @property
    def kind(self) -> str: ...  # PAYMENT or CANCEL
    @property
    def amount(self) -> int: ...  # positive for a payment, negative for a cancel
    @property
    def fee(self) -> int: ...
    @property
    def payout(self) -> int: ...  # amount - fee


@dataclass(frozen=True, slots=True)
class Item:
    """A discrepancy; amounts are signed as in the file (a cancel is negative)."""

    kind: str  # MISSING_IN_HUB, MISSING_AT_GATEWAY or AMOUNT_MISMATCH
    order_id: str
    payment_key: str | None
    transaction_key: str | None
    hub_amount: int | None
    gateway_amount: int | None
    explanation: str


@dataclass(frozen=True, slots=True)
class Report:
    day: date
    ran_at: datetime
    matched: int
    missing_in_hub: int
    missing_at_gateway: int
    amount_mismatch: int
    gateway_amount: int  # the file's net amount
    hub_amount: int  # the hub's net amount: payments less refunds
    gateway_fees: int
    items: tuple[Item, ...]


@dataclass(frozen=True, slots=True)
class _Booking:
    """One thing the hub booked on the day: a payment, or a refund (negative)."""

    kind: str
    payment_id: UUID
    order_id: str
    payment_key: str | None
    transaction_key: str | None
    amount: int
    at: datetime

    @property
    def key(self) -> tuple[str, str | None]:
        """What a settlement line names it by: a payment's key, a refund's transaction key."""
        return (self.kind, self.payment_key if self.kind == PAYMENT else self.transaction_key)


_HUB_SIDE = """
SELECT 'PAYMENT' AS kind, payment_id, order_id, payment_key, NULL AS transaction_key,
       amount, confirmed_at AS at
  FROM payments
 WHERE (confirmed_at AT TIME ZONE 'Asia/Seoul')::date = $1 AND status = ANY($2::text[])
UNION ALL
SELECT 'CANCEL', p.payment_id, p.order_id, p.payment_key, r.transaction_key,
       -r.amount, r.done_at
  FROM payment_refunds r JOIN payments p USING (payment_id)
 WHERE r.status = 'done' AND (r.done_at AT TIME ZONE 'Asia/Seoul')::date = $1
"""


async def reconcile(pool: asyncpg.Pool, day: date, rows: Sequence[SettlementLine]) -> Report:
    """Match `rows` (the file for `day`) with the hub's book of `day`, store the report in
    place of an earlier run of the day, and book the matched lines in the ledger; all in
    one transaction. ValueError for a malformed line, before anything is written."""
    for row in rows:
        _check(row)
    async with pool.acquire() as conn, conn.transaction():
        # One run of a day at a time: two would both delete, then both insert.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('payment_reconciliation'), $1)",
            day.toordinal(),
        )
        bookings = [_Booking(**r) for r in await conn.fetch(_HUB_SIDE, day, list(BOOKED))]
        matched, items, postings, unknown = _match(day, rows, bookings)
        items += await _explain_unknown(conn, day, unknown)
        items.sort(key=lambda item: (item.kind, item.order_id, item.transaction_key or ""))
        report = Report(
            day=day,
            ran_at=datetime.now(UTC),
            matched=matched,
            missing_in_hub=sum(item.kind == MISSING_IN_HUB for item in items),
            missing_at_gateway=sum(item.kind == MISSING_AT_GATEWAY for item in items),
            amount_mismatch=sum(item.kind == AMOUNT_MISMATCH for item in items),
            gateway_amount=sum(row.amount for row in rows),
            hub_amount=sum(booking.amount for booking in bookings),
            gateway_fees=sum(row.fee for row in rows),
            items=tuple(items),
        )
        await _store(conn, report)
        await ledger.post_many(conn, postings)
    return report


def _check(row: SettlementLine) -> None:
    sign_ok = row.amount > 0 if row.kind == PAYMENT else row.kind == CANCEL and row.amount < 0
    if not sign_ok or row.payout != row.amount - row.fee:
        raise ValueError(
            f"settlement line {row.transaction_key} ({row.kind}, amount {row.amount}, fee"
            f" {row.fee}, payout {row.payout}): a PAYMENT is positive, a CANCEL negative,"
            " and the payout is the amount less the fee"
        )


def _line_key(row: SettlementLine) -> tuple[str, str]:
    return (row.kind, row.payment_key if row.kind == PAYMENT else row.transaction_key)


def _match(
    day: date, rows: Sequence[SettlementLine], bookings: Sequence[_Booking]
) -> tuple[int, list[Item], list[ledger.Posting], list[SettlementLine]]:
    """(matched count, discrepancies found, settlement postings, lines the hub did not
    book that day)."""
    booked = {b.key: b for b in bookings if b.key[1] is not None}
    in_file: dict[str, list[SettlementLine]] = defaultdict(list)
    for row in rows:
        in_file[row.order_id].append(row)
    matched = 0
    items: list[Item] = []
    postings: list[ledger.Posting] = []
    unknown: list[SettlementLine] = []
    seen: set[tuple[str, str | None]] = set()
    for row in rows:
        key = _line_key(row)
        booking = booked.get(key)
        if key in seen:
            items.append(_gateway_item(row, f"the file settles this {_noun(row)} a second time"))
        elif booking is None:
            unknown.append(row)
        elif booking.amount != row.amount:
            items.append(_mismatch(row, booking))
        else:
            matched += 1
            postings.append(
                ledger.settlement(
                    row.transaction_key, row.amount, row.fee, row.payout, booking.payment_id
                )
            )
        seen.add(key)
    items += [_missing_at_gateway(day, b, in_file) for b in bookings if b.key not in seen]
    return matched, items, postings, unknown


def _noun(row: SettlementLine) -> str:
    return "payment" if row.kind == PAYMENT else "cancel"


def _won(amount: int) -> str:
    return f"{amount:,} won"


def _gateway_item(row: SettlementLine, explanation: str) -> Item:
    return Item(
        MISSING_IN_HUB, row.order_id, row.payment_key, row.transaction_key, None, row.amount,
        explanation,
    )  # fmt: skip


def _mismatch(row: SettlementLine, booking: _Booking) -> Item:
    difference = row.amount - booking.amount
    return Item(
        AMOUNT_MISMATCH,
        row.order_id,
        row.payment_key,
        row.transaction_key,
        booking.amount,
        row.amount,
        f"the gateway settled {_won(row.amount)}, the hub booked {_won(booking.amount)}:"
        f" {_won(abs(difference))} {'more' if difference > 0 else 'less'} at the gateway",
    )


def _missing_at_gateway(
    day: date, booking: _Booking, in_file: Mapping[str, Sequence[SettlementLine]]
) -> Item:
    when = f"{booking.at.astimezone(KST):%Y-%m-%d %H:%M} KST"
    if booking.kind == PAYMENT:
        said = f"the hub booked this payment of {_won(booking.amount)} at {when}"
    elif booking.transaction_key is None:
        said = f"the hub's refund of {_won(-booking.amount)} at {when} has no transaction key"
    else:
        said = f"the hub booked this refund of {_won(-booking.amount)} at {when}"
    others = [r for r in in_file.get(booking.order_id, ()) if r.kind == booking.kind]
    if others:
        keys = ", ".join(r.payment_key if r.kind == PAYMENT else r.transaction_key for r in others)
        lacks = f"the file has this order's {booking.kind.lower()} under {keys} instead"
    else:
        lacks = f"the gateway's file for {day} lacks it"
    return Item(
        MISSING_AT_GATEWAY, booking.order_id, booking.payment_key, booking.transaction_key,
        booking.amount, None, f"{said}; {lacks}",
    )  # fmt: skip


async def _explain_unknown(
    conn: asyncpg.Connection, day: date, unknown: Sequence[SettlementLine]
) -> list[Item]:
    """Why the hub did not book what these lines settle, from what it has of their orders."""
    if not unknown:
        return []
    orders = sorted({row.order_id for row in unknown})
    payments = {
        r["order_id"]: r
        for r in await conn.fetch(
            "SELECT order_id, payment_key, status, failure_code,"
            " (confirmed_at AT TIME ZONE 'Asia/Seoul')::date AS confirmed_day"
            " FROM payments WHERE order_id = ANY($1::text[])",
            orders,
        )
    }
    refunds: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for r in await conn.fetch(
        "SELECT p.order_id, r.transaction_key, r.status, r.amount,"
        " (r.done_at AT TIME ZONE 'Asia/Seoul')::date AS done_day"
        " FROM payment_refunds r JOIN payments p USING (payment_id)"
        " WHERE p.order_id = ANY($1::text[]) ORDER BY r.requested_at",
        orders,
    ):
        refunds[r["order_id"]].append(r)
    return [
        _gateway_item(row, _why_not_booked(day, row, payments.get(row.order_id), refunds))
        for row in unknown
    ]


def _why_not_booked(
    day: date,
    row: SettlementLine,
    payment: asyncpg.Record | None,
    refunds: Mapping[str, Sequence[asyncpg.Record]],
) -> str:
    settled = f"the gateway settled a {_noun(row)} of {_won(abs(row.amount))}"
    if payment is None:
        return f"{settled} for an order the hub has no payment for"
    if row.kind == PAYMENT:
        if payment["payment_key"] != row.payment_key:
            return f"{settled}; the hub's payment for this order has key {payment['payment_key']}"
        if payment["status"] in BOOKED:
            return f"{settled}; the hub booked it on {payment['confirmed_day']}, not {day}"
        failure = f" ({payment['failure_code']})" if payment["failure_code"] else ""
        return (
            f"{settled}; the hub has this payment as {payment['status']}{failure}:"
            f" {_NOT_BOOKED[payment['status']]}"
        )
    order_refunds = refunds.get(row.order_id, ())
    same = [r for r in order_refunds if r["transaction_key"] == row.transaction_key]
    if same and same[0]["status"] == "done":
        return f"{settled}; the hub booked this refund on {same[0]['done_day']}, not {day}"
    if same:
        return f"{settled}; the hub has this refund as {same[0]['status']}"
    if not order_refunds:
        return f"{settled}; the hub has no refund of this payment"
    listed = ", ".join(f"{_won(r['amount'])} {r['status']}" for r in order_refunds)
    return f"{settled}; no refund of the hub has this transaction key (it has: {listed})"


async def _store(conn: asyncpg.Connection, report: Report) -> None:
    """The run in place of an earlier one of the day (its items go with it: cascade)."""
    await conn.execute("DELETE FROM payment_reconciliations WHERE day = $1", report.day)
    await conn.execute(
        "INSERT INTO payment_reconciliations (day, ran_at, matched, missing_in_hub,"
        " missing_at_gateway, amount_mismatch, gateway_amount, hub_amount, gateway_fees)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        report.day,
        report.ran_at,
        report.matched,
        report.missing_in_hub,
        report.missing_at_gateway,
        report.amount_mismatch,
        report.gateway_amount,
        report.hub_amount,
        report.gateway_fees,
    )
    await conn.executemany(
        "INSERT INTO payment_reconciliation_items (day, kind, order_id, payment_key,"
        " transaction_key, hub_amount, gateway_amount, explanation)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        [
            (report.day, i.kind, i.order_id, i.payment_key, i.transaction_key, i.hub_amount,
             i.gateway_amount, i.explanation)
            for i in report.items
        ],
    )  # fmt: skip


async def stored_report(pool: asyncpg.Pool, day: date) -> Report | None:
    """The last run of `day`, None if it was never reconciled."""
    row = await pool.fetchrow("SELECT * FROM payment_reconciliations WHERE day = $1", day)
    if row is None:
        return None
    items = await pool.fetch(
        "SELECT kind, order_id, payment_key, transaction_key, hub_amount, gateway_amount,"
        " explanation FROM payment_reconciliation_items WHERE day = $1"
        " ORDER BY kind, order_id, coalesce(transaction_key, '')",
        day,
    )
    return Report(**dict(row), items=tuple(Item(**dict(item)) for item in items))


CSV_COLUMNS = (
    "day", "kind", "order_id", "payment_key", "transaction_key", "hub_amount",
    "gateway_amount", "difference", "explanation",
)  # fmt: skip


def report_csv(report: Report) -> str:
    """The discrepancies of a run as CSV for finance staff, one per line; `difference` is
    the gateway's amount less the hub's (empty where one side lacks it)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for item in report.items:
        both = item.hub_amount is not None and item.gateway_amount is not None
        writer.writerow([
            report.day.isoformat(), item.kind, item.order_id, item.payment_key or "",
            item.transaction_key or "", _blank(item.hub_amount), _blank(item.gateway_amount),
            (item.gateway_amount or 0) - (item.hub_amount or 0) if both else "",
            item.explanation,
        ])  # fmt: skip
    return out.getvalue()


def _blank(amount: int | None) -> int | str:
    return "" if amount is None else amount
