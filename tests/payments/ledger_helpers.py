"""Payments and refunds written straight into the tables, for the ledger, outbox and
reconciliation tests (which come before the payment service that writes them)."""

from __future__ import annotations

import random
import uuid
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg

KST = ZoneInfo("Asia/Seoul")
DISTRICT = "11110"
BOOKED = ("confirmed", "partially_refunded", "refunded")


def kst(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=KST)


async def insert_payment(
    conn: asyncpg.Connection,
    amount: int,
    *,
    status: str = "confirmed",
    confirmed_at: datetime | None = None,
    payment_key: str | None = None,
    order_id: str | None = None,
    tax_kind: int = 1,
    district: str = DISTRICT,
) -> tuple[uuid.UUID, str, str]:
    """A payment row with every required column: (payment_id, order_id, payment_key).
    Booked statuses get a receipt number and, unless given, a confirmation time now."""
    payment_id = uuid.uuid4()
    order_id = order_id or f"order-{payment_id.hex[:12]}"
    payment_key = payment_key or f"pk_{payment_id.hex}"
    booked = status in BOOKED
    if booked and confirmed_at is None:
        confirmed_at = datetime.now(KST)
    late_fee = amount // 10
    await conn.execute(
        "INSERT INTO payments (payment_id, order_id, epay_no, tax_kind, tax_no, district_code,"
        " item_code, item, payer_masked, due_date, base_amount, late_fee, amount, channel,"
        " client_id, collect_day, status, payment_key, receipt_no, confirmed_at)"
        " VALUES ($1, $2, $3, $4, 'T-1', $5, '101', '자동차세', '홍*동', $6, $7, $8, $9,"
        " 'online', 'test-app', $6, $10, $11, $12, $13)",
        payment_id,
        order_id,
        "".join(random.choices("0123456789", k=19)),
        tax_kind,
        district,
        (confirmed_at or datetime.now(KST)).date(),
        amount - late_fee,
        late_fee,
        amount,
        status,
        payment_key,
        f"R-{payment_id.hex[:16]}" if booked else None,
        confirmed_at,
    )
    return payment_id, order_id, payment_key


async def insert_refund(
    conn: asyncpg.Connection,
    payment_id: uuid.UUID,
    amount: int,
    *,
    status: str = "done",
    done_at: datetime | None = None,
    transaction_key: str | None = None,
) -> tuple[uuid.UUID, str | None]:
    """A refund row: (refund_id, transaction_key). Done refunds get a key and a time."""
    refund_id = uuid.uuid4()
    if status == "done":
        transaction_key = transaction_key or f"tk_{refund_id.hex}"
        done_at = done_at or datetime.now(KST)
    await conn.execute(
        "INSERT INTO payment_refunds (refund_id, payment_id, amount, reason, status,"
        " requested_by, transaction_key, requested_at, done_at)"
        " VALUES ($1, $2, $3, 'test', $4, 'supervisor', $5, $6, $7)",
        refund_id,
        payment_id,
        amount,
        status,
        transaction_key,
        (done_at or datetime.now(KST)) - timedelta(minutes=1),
        done_at,
    )
    return refund_id, transaction_key
