"""Notices from payment events: a citizen's payment received, and their refund.

Only payments a citizen made through an app (with their token) have a citizen to tell;
an official's terminal payment has none and makes no notice. The payment is read through
the payments domain's Python API (the event carries no citizen).
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from resolvers.notices.store import NewNotice
from resolvers.payments import store as payments

DOMAIN = "payments"


async def translate(pool: asyncpg.Pool, envelope: dict[str, Any]) -> NewNotice | None:
    kind = envelope.get("type")
    if kind not in ("payment.confirmed", "payment.refunded"):
        return None
    payment = await payments.by_id(pool, uuid.UUID(envelope["data"]["payment_id"]))
    if payment is None or payment.user_id is None:
        return None
    if kind == "payment.confirmed":
        type_code = "payment_received"
        params: dict[str, Any] = {
            "item": payment.item,
            "amount": payment.amount,
            "receipt_no": payment.receipt_no,
        }
    else:
        type_code = "refund_issued"
        refunded = await _refunded_by(pool, payment.payment_id, envelope["data"]["refunded_amount"])
        params = {"item": payment.item, "amount": refunded}
    return NewNotice.from_event(
        DOMAIN, envelope["event_id"], type_code=type_code, user_id=payment.user_id, params=params
    )


async def _refunded_by(pool: asyncpg.Pool, payment_id: uuid.UUID, total: int) -> int:
    """What the refund an event announces gave back. The event carries the payment's
    refunded total after it; the refund is the one whose running total (refunds in the
    order they were done) reaches it. A second partial refund is its own amount, not the
    sum of both."""
    done = sorted(
        (r for r in await payments.refunds_of(pool, payment_id) if r.done_at is not None),
        key=lambda r: r.done_at or r.requested_at,
    )
    running = 0
    for refund in done:
        running += refund.amount
        if running == total:
            return refund.amount
    return total
