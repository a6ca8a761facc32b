"""Notices from payment events: a bill issued to a citizen, their payment received, and
their refund.

Only payments a citizen made through an app (with their token) have a citizen to tell;
an official's terminal payment has none and makes no notice. The payment is read through
the payments domain's Python API (the event carries no citizen).

A bill the tax system issued (`bill.created`, from its feed) names its payer by the
pseudonym agencies use (`payer_ref`, see citizens.py): the tax-due notice goes to the
citizen who linked that identity, with the bill to pay when the type may carry a payment,
once per 전자납부번호 however often the bill is announced. A bill already paid, or whose
payer the tax system knows no CI of, makes none.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from resolvers.notices import catalogue
from resolvers.notices.store import NewNotice
from resolvers.payments import store as payments
from resolvers.payments.bill_feed import BILL_CREATED

DOMAIN = "payments"
TAX_DUE = "tax_due"


async def translate(pool: asyncpg.Pool, envelope: dict[str, Any]) -> NewNotice | None:
    kind = envelope.get("type")
    if kind == BILL_CREATED:
        return await _bill_created(pool, envelope["data"])
    if kind not in ("payment.confirmed", "payment.refunded"):
        return None
    if envelope["data"].get("terminal_id"):  # an official's terminal: no citizen, no read
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


async def _bill_created(pool: asyncpg.Pool, bill: dict[str, Any]) -> NewNotice | None:
    if bill["paid"] or not bill.get("payer_ref"):
        return None
    payable = (await catalogue.by_code(pool, TAX_DUE)).payment_link
    return NewNotice(
        type_code=TAX_DUE,
        dedupe_key=f"bill/{bill['epay_no']}",
        source=DOMAIN,
        citizen_ref=bill["payer_ref"],
        params={"item": bill["item"], "amount": bill["amount"], "due_date": bill["due_date"]},
        payment={"amount": bill["amount"], "epayNo": bill["epay_no"], "dueDate": bill["due_date"]}
        if payable
        else None,
    )
