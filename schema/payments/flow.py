"""How a bill becomes a confirmed, booked, receipted payment: the steps between the hub's
own state (resolvers/payments/store.py) and the outside calls (tax system, gateway).

Every step is stored before the outside call it precedes, so a process killed anywhere
leaves a state the next step (a retry, the recovery job, a webhook) can finish:

    collect:  bill looked up → payment `requested` (terminal's district and limit checked)
    confirm:  `confirming` + payment key stored → gateway confirm →
              confirmed (ledger, receipt, outbox, notice owed) | failed | unknown
    resolve:  unknown / stale confirming → lookup by order id (and the same confirm,
              same idempotency key, if the gateway is still waiting for it)
    refund:   refund `requested` → gateway cancel (its own idempotency key) →
              done (reversal booked, cancel notice owed) | failed | unknown → resolved alike

The gateway's idempotency keys derive from the hub's ids (`confirm-<order id>`,
`refund-<refund id>`): a resend after a lost answer is the same request, charged once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from adapters.errors import UpstreamError
from adapters.kinds import (
    Declined,
    GatewayPayment,
    NoticeAck,
    NoticeOutcome,
    ReceiptNotice,
    WebhookEvent,
    WebhookRejected,
)
from hub.core.caller import Caller
from hub.core.errors import BadUserInput, Forbidden
from resolvers.payments import errors, idempotency, scopes, store, terminals
from resolvers.payments.settings import PaymentsSettings
from resolvers.payments.store import KST, Payment, Refund
from resolvers.payments.terminals import Terminal
from schema.payments.upstreams import Upstreams

log = logging.getLogger(__name__)

APPROVED = ("DONE", "PARTIAL_CANCELED", "CANCELED")
WAITING = ("READY", "IN_PROGRESS")
# Gateway codes that say "ask again later", not "no": never turn a payment into failed.
TRY_AGAIN = frozenset(
    {"IDEMPOTENT_REQUEST_PROCESSING", "FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING"}
)
EPAY_NO_LENGTH = 19


@dataclass(frozen=True)
class Collector:
    """Who collects: a terminal (an official's phone) or a citizen in a private app.
    `unread`: a terminal whose row is not read yet (`caller_collector`); collect and
    confirm read and check it with their idempotency key's lock, in one round trip."""

    client_id: str
    user_id: uuid.UUID | None
    terminal: Terminal | None
    unread: bool = False


@dataclass(frozen=True)
class Payments:
    """What the flow needs: the database, the adapters and the settings."""

    pool: asyncpg.Pool
    upstreams: Upstreams
    settings: PaymentsSettings

    @property
    def order_window(self) -> timedelta:
        return timedelta(minutes=self.settings.order_minutes)

    @property
    def keep_keys(self) -> timedelta:
        return timedelta(hours=self.settings.idempotency_key_hours)

    def crash(self, point: str) -> None:
        """Fault drills (IEUM_PAYMENTS_CRASH_POINT): die here as a killed process would."""
        if self.settings.crash_point == point:
            log.critical("payments.crash_drill point=%s", point)
            os._exit(70)

    def drill(self, point: str) -> Callable[[], None] | None:
        """`crash(point)` for a step that runs it inside its transaction, or None when
        that drill is off (the step is then one statement, committed as it ends)."""
        return (lambda: self.crash(point)) if self.settings.crash_point == point else None


def mask_name(name: str) -> str:
    """김철수 → 김*수, 김수 → 김*, 남궁민수 → 남**수: shown to officials and on receipts."""
    name = name.strip()
    if len(name) <= 1:
        return "*"
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


async def collector(pool: asyncpg.Pool, caller: Caller) -> Collector:
    """The caller as a collector; a terminal must be enrolled and active."""
    who = caller_collector(caller)
    if who.unread:
        return Collector(
            who.client_id, None, terminals.usable(await terminals.get(pool, who.client_id))
        )
    return who


def caller_collector(caller: Caller) -> Collector:
    """The caller as a collector, its terminal (if it is one) not read yet: `collect` and
    `confirm` read and check it with their idempotency key's lock."""
    client_id = caller.client_id or ""
    if scopes.COLLECT.name in caller.scopes:
        return Collector(client_id, None, None, unread=True)
    if scopes.PAY.name in caller.scopes and caller.user_id is not None:
        return Collector(client_id, uuid.UUID(caller.user_id), None)
    raise Forbidden("collecting needs a terminal's payments:collect or a citizen's payments:pay")


async def _once(
    hub: Payments,
    who: Collector,
    key: str,
    operation: str,
    request: Mapping[str, object],
    run: Callable[[asyncpg.Connection, Collector], Awaitable[dict[str, object]]],
) -> dict[str, Any]:
    """`run(conn, who)`'s answer once per idempotency key (idempotency.once), `who` with
    its terminal read and checked in the key's lock call when it was not read yet."""
    if not who.unread:

        async def as_read(conn: asyncpg.Connection) -> dict[str, object]:
            return await run(conn, who)

        return await idempotency.once(
            hub.pool,
            owner=who.client_id,
            key=key,
            operation=operation,
            request=request,
            keep=hub.keep_keys,
            run=as_read,
        )

    async def as_terminal(conn: asyncpg.Connection, terminal: Terminal) -> dict[str, object]:
        return await run(conn, Collector(who.client_id, None, terminal))

    return await idempotency.once_as_terminal(
        hub.pool,
        terminal_id=who.client_id,
        key=key,
        operation=operation,
        request=request,
        keep=hub.keep_keys,
        run=as_terminal,
    )


# Collect


async def collect(hub: Payments, who: Collector, epay_no: str, key: str) -> Payment:
    if len(epay_no) != EPAY_NO_LENGTH:
        raise BadUserInput(
            f"an 전자납부번호 has {EPAY_NO_LENGTH} characters, not {len(epay_no)}",
            argument="epayNo",
        )

    async def run(conn: asyncpg.Connection, who: Collector) -> dict[str, object]:
        return (await _collect(hub, conn, who, epay_no)).to_json()

    answer = await _once(hub, who, key, "collectBill", {"epayNo": epay_no}, run)
    return Payment.from_json(answer)


async def _collect(
    hub: Payments, conn: asyncpg.Connection, who: Collector, epay_no: str
) -> Payment:
    bill = await (await hub.upstreams.tax()).bill(epay_no)
    if bill is None:
        raise errors.BillNotFound(f"the tax system has no bill {epay_no}")
    if who.terminal is not None and bill.district_code != who.terminal.district_code:
        raise errors.OutsideDistrict(
            f"bill {epay_no} belongs to district {bill.district_code}; this terminal collects"
            f" for {who.terminal.district_code} only",
            billDistrict=bill.district_code,
            terminalDistrict=who.terminal.district_code,
        )
    if bill.paid:
        raise errors.BillAlreadyPaid(f"bill {epay_no} is paid already")
    today = store.korea_today()
    amount = bill.amount_due(today)
    new = store.NewPayment(
        epay_no=bill.epay_no,
        tax_kind=int(bill.tax_kind),
        tax_no=bill.tax_no,
        district_code=bill.district_code,
        item_code=bill.item_code,
        item=bill.item,
        payer_masked=mask_name(bill.payer_name),
        due_date=bill.due_date,
        base_amount=bill.amount,
        channel="terminal" if who.terminal else "online",
        client_id=who.client_id,
        user_id=who.user_id,
        terminal_id=who.terminal.terminal_id if who.terminal else None,
    )
    try:
        return await store.open_payment(
            conn, new, amount, hub.order_window, check_limit=who.terminal is not None
        )
    except store.OverLimit as exc:
        if exc.daily_limit is None or not exc.active:
            raise errors.TerminalDisabled("this terminal was disabled") from None
        raise errors.DailyLimitExceeded(
            f"collecting {amount:,} won would take this terminal past its daily limit of"
            f" {exc.daily_limit:,} won ({exc.used:,} won collected today)",
            limit=exc.daily_limit,
            used=exc.used,
        ) from None
    except store.LiveBillPayment as exc:
        if exc.existing is not None and exc.existing.status in store.PAID:
            raise errors.BillAlreadyPaid(f"bill {epay_no} is paid already") from None
        raise errors.BillInPayment(
            f"bill {epay_no} is being collected by another payment; try again when it ends"
        ) from None


# Charges of other domains


async def charge(
    hub: Payments,
    who: Collector,
    *,
    source: str,
    reference: str,
    district_code: str,
    item: str,
    amount: int,
    payer_name: str,
    key: str,
) -> Payment:
    """Open a payment of another domain's charge (a waste pickup's fee …): no tax bill,
    booked as non-tax revenue of the district. The payer confirms it like any payment
    (`confirm`, the GraphQL `confirmPayment`); one live payment per (source, reference).
    Raises BillAlreadyPaid / BillInPayment as for a bill."""
    if amount <= 0:
        raise BadUserInput("a charge needs a positive amount in won")

    async def run(conn: asyncpg.Connection) -> dict[str, object]:
        new = store.NewPayment(
            epay_no=None,
            tax_kind=2,  # 세외수입: fees the district charges
            tax_no=reference,
            district_code=district_code,
            item_code=source,
            item=item,
            payer_masked=mask_name(payer_name),
            due_date=store.korea_today(),
            base_amount=amount,
            channel="terminal" if who.terminal else "online",
            client_id=who.client_id,
            user_id=who.user_id,
            terminal_id=who.terminal.terminal_id if who.terminal else None,
            source=source,
            reference=reference,
        )
        try:
            return (await store.open_payment(conn, new, amount, hub.order_window)).to_json()
        except store.LiveBillPayment as exc:
            if exc.existing is not None and exc.existing.status in store.PAID:
                raise errors.BillAlreadyPaid(f"{source} {reference} is paid already") from None
            raise errors.BillInPayment(f"{source} {reference} has a payment open") from None

    answer = await idempotency.once(
        hub.pool,
        owner=who.client_id,
        key=key,
        operation=f"charge:{source}",
        request={"reference": reference, "amount": amount, "district": district_code},
        keep=hub.keep_keys,
        run=run,
    )
    return Payment.from_json(answer)


# Confirm


async def confirm(
    hub: Payments, who: Collector, order_id: str, payment_key: str, amount: int, key: str
) -> Payment:
    async def run(conn: asyncpg.Connection, who: Collector) -> dict[str, object]:
        return (await _confirm(hub, conn, who, order_id, payment_key, amount)).to_json()

    request = {"orderId": order_id, "paymentKey": payment_key, "amount": amount}
    answer = await _once(hub, who, key, "confirmPayment", request, run)
    return Payment.from_json(answer)


async def _confirm(
    hub: Payments,
    conn: asyncpg.Connection,
    who: Collector,
    order_id: str,
    payment_key: str,
    amount: int,
) -> Payment:
    try:
        started = await store.begin_confirm(conn, order_id, who.client_id, amount, payment_key)
    except asyncpg.UniqueViolationError:
        raise BadUserInput("this payment key belongs to another order") from None
    if started is not None:
        return await _send_confirm(hub, conn, started)
    # Not this client's requested payment of this amount: say why, or where it is now.
    payment = await store.by_order(conn, order_id)
    if payment is None or payment.client_id != who.client_id:
        raise errors.PaymentNotFound(f"you have no payment with order id {order_id}")
    if payment.status in ("failed", "expired"):
        raise errors.PaymentClosed(
            f"payment {order_id} is {payment.status}; collect the bill again",
            status=payment.status,
        )
    if payment.status == "requested":  # so the amount is not the payment's
        raise errors.AmountMismatch(
            f"the card was read for {amount:,} won but the bill's payment is"
            f" {payment.amount:,} won",
            expected=payment.amount,
        )
    if payment.payment_key != payment_key:
        raise BadUserInput("this order was confirmed with another payment key")
    if payment.status == "unknown":
        return await resolve(hub, conn, payment)
    return payment  # confirmed or later, or a confirm in flight: its state as it is


async def _send_confirm(hub: Payments, conn: asyncpg.Connection, payment: Payment) -> Payment:
    """The confirm call for a `confirming`/`unknown` payment: the same body and the same
    idempotency key however often it is sent."""
    assert payment.payment_key is not None
    hub.crash("before_gateway")
    gateway = await hub.upstreams.gateway()
    try:
        answer = await gateway.confirm(
            payment.payment_key,
            payment.order_id,
            payment.amount,
            idempotency_key=f"confirm-{payment.order_id}",
        )
    except Declined as exc:
        if exc.code == "ALREADY_PROCESSED_PAYMENT":
            return await _look_up(hub, conn, payment, resend=False)
        if exc.code in TRY_AGAIN:
            return await _unknown(conn, payment)
        failed = await store.finish_failed(conn, payment.payment_id, exc.code, exc.message)
        return failed or await _current(conn, payment)
    except UpstreamError as exc:
        log.warning("payments.confirm_unknown order=%s error=%s", payment.order_id, exc)
        return await _unknown(conn, payment)
    hub.crash("after_gateway")
    return await _apply(hub, conn, payment, answer)


async def _unknown(conn: asyncpg.Connection, payment: Payment) -> Payment:
    return await store.mark_unknown(conn, payment.payment_id) or await _current(conn, payment)


async def _current(conn: asyncpg.Connection, payment: Payment) -> Payment:
    found = await store.by_id(conn, payment.payment_id)
    assert found is not None
    return found


async def _apply(
    hub: Payments, conn: asyncpg.Connection, payment: Payment, answer: GatewayPayment
) -> Payment:
    """What the gateway says of a payment, applied once to the hub's state: the payment
    as it is then."""
    _, now = await _applied(hub, conn, payment, answer)
    return now or await _current(conn, payment)


async def _applied(
    hub: Payments, conn: asyncpg.Connection, payment: Payment, answer: GatewayPayment
) -> tuple[bool, Payment | None]:
    """`_apply`'s step: whether it changed the payment (False: another step, a webhook
    or the confirm's answer, got there first, or the gateway is still waiting for the
    confirm), and the payment as it is now when the step read it."""
    if answer.order_id != payment.order_id or answer.total_amount != payment.amount:
        log.error(
            "payments.gateway_mismatch order=%s gateway_order=%s amount=%s gateway_amount=%s",
            payment.order_id,
            answer.order_id,
            payment.amount,
            answer.total_amount,
        )
        unknown = await store.mark_unknown(conn, payment.payment_id)
        return unknown is not None, unknown
    if answer.status in APPROVED:
        confirmed, booked_now = await store.finish_confirmed(
            conn,
            payment,
            payment_key=answer.payment_key,
            method=answer.method,
            card_number=answer.card_number,
            approve_no=answer.approve_no,
            approved_at=answer.approved_at or datetime.now(KST),
            before_commit=hub.drill("before_ledger_commit"),
        )
        return booked_now, confirmed
    if answer.status in WAITING:
        return False, None
    failed = await store.finish_failed(
        conn, payment.payment_id, f"GATEWAY_{answer.status}", f"the gateway reports {answer.status}"
    )
    return failed is not None, failed


async def resolve(hub: Payments, conn: asyncpg.Connection, payment: Payment) -> Payment:
    """Find out what became of a confirm whose answer was lost (or never sent)."""
    return await _look_up(hub, conn, payment, resend=True)


async def _look_up(
    hub: Payments, conn: asyncpg.Connection, payment: Payment, *, resend: bool
) -> Payment:
    gateway = await hub.upstreams.gateway()
    try:
        answer = await gateway.payment_by_order(payment.order_id)
    except UpstreamError as exc:
        log.warning("payments.lookup_failed order=%s error=%s", payment.order_id, exc)
        return await _unknown(conn, payment)
    if answer is None:
        failed = await store.finish_failed(
            conn, payment.payment_id, "NOT_FOUND_PAYMENT", "the gateway has no such payment"
        )
        return failed or await _current(conn, payment)
    if answer.status in WAITING and resend and payment.payment_key:
        return await _send_confirm(hub, conn, payment)  # it never arrived: same request again
    return await _apply(hub, conn, payment, answer)


# Refund


async def refund(
    hub: Payments,
    requested_by: str,
    payment_id: uuid.UUID,
    amount: int | None,
    reason: str,
    key: str,
) -> tuple[Payment, Refund]:
    if not reason.strip():
        raise BadUserInput("give a reason for the refund", argument="reason")

    async def run(conn: asyncpg.Connection) -> dict[str, object]:
        payment, done = await _refund(hub, conn, requested_by, payment_id, amount, reason)
        return {"payment": payment.to_json(), "refund": done.to_json()}

    answer = await idempotency.once(
        hub.pool,
        owner=requested_by,
        key=key,
        operation="refundPayment",
        request={"paymentId": str(payment_id), "amount": amount, "reason": reason},
        keep=hub.keep_keys,
        run=run,
    )
    return Payment.from_json(answer["payment"]), Refund.from_json(answer["refund"])


async def _refund(
    hub: Payments,
    conn: asyncpg.Connection,
    requested_by: str,
    payment_id: uuid.UUID,
    amount: int | None,
    reason: str,
    *,
    automatic: bool = False,
) -> tuple[Payment, Refund]:
    try:
        payment, opened = await store.open_refund(
            conn, payment_id, amount, reason, requested_by, automatic=automatic
        )
    except store.RefundRefused as exc:
        if exc.refundable > 0:
            raise errors.RefundExceedsBalance(str(exc), refundable=exc.refundable) from None
        raise errors.NotRefundable(str(exc)) from None
    return await send_cancel(hub, conn, payment, opened)


async def send_cancel(
    hub: Payments, conn: asyncpg.Connection, payment: Payment, opened: Refund
) -> tuple[Payment, Refund]:
    """The cancel call for a requested/unknown refund, with the refund's own key."""
    assert payment.payment_key is not None
    gateway = await hub.upstreams.gateway()
    try:
        answer = await gateway.cancel(
            payment.payment_key,
            opened.amount,
            opened.reason,
            idempotency_key=f"refund-{opened.refund_id}",
        )
    except Declined as exc:
        if exc.code in TRY_AGAIN:
            await store.mark_refund_unknown(conn, opened.refund_id)
        else:
            await store.fail_refund(conn, opened.refund_id, exc.code, exc.message)
        return await _current(conn, payment), await _refund_now(conn, opened)
    except UpstreamError as exc:
        log.warning("payments.refund_unknown refund=%s error=%s", opened.refund_id, exc)
        await store.mark_refund_unknown(conn, opened.refund_id)
        return await _current(conn, payment), await _refund_now(conn, opened)
    key = answer.cancels[-1].transaction_key if answer.cancels else answer.payment_key
    return await store.finish_refund(conn, opened.refund_id, key)


async def _refund_now(conn: asyncpg.Connection, opened: Refund) -> Refund:
    found = await store.refund_by_id(conn, opened.refund_id)
    assert found is not None
    return found


# Webhooks


async def on_webhook(hub: Payments, body: bytes, headers: Mapping[str, str]) -> tuple[int, str]:
    """Apply a gateway webhook once: (HTTP status, outcome). A verified event is always
    answered 200 so the gateway stops redelivering; what could not be applied is kept
    with its outcome for the recovery job and reconciliation.

    Most webhooks find their payment confirmed already by the confirm's own answer: the
    event recorded with its outcome in one statement, no transaction. A payment still in
    flight (as that statement read it, no read of its own) has the event applied to it
    by the same conditional steps a confirm's answer takes (store.finish_confirmed,
    finish_failed, mark_unknown): when the answer and the webhook come together, one
    books and the other finds it booked, and neither holds the payment locked while the
    other waits. A delivery seen before is answered "duplicate" (what it applied, if
    anything, was applied once)."""
    gateway = await hub.upstreams.gateway()
    try:
        event = gateway.verify_webhook(body, headers)
    except WebhookRejected as exc:
        log.warning("payments.webhook_rejected reason=%s", exc)
        return 401, f"rejected: {exc}"
    found = event.payment
    async with hub.pool.acquire() as conn:
        settled = await store.record_settled_webhook(
            conn,
            found.order_id,
            event.event_id,
            event.event_type,
            found.payment_key,
            found.status,
        )
        if isinstance(settled, tuple):
            outcome, first = settled
            return 200, outcome if first else "duplicate"
        payment = settled  # in flight as the statement read it
        outcome = _outcome(payment, found.payment_key)
        if outcome == "apply":  # unless the confirm's answer (or a lookup) got there first
            assert payment is not None
            changed, now = await _applied(hub, conn, payment, found)
            outcome = "applied:" + now.status if changed and now else "no_change"
        first = await _record(conn, event, outcome)
    return 200, outcome if first else "duplicate"


async def _record(conn: asyncpg.Connection, event: WebhookEvent, outcome: str) -> bool:
    return await store.record_webhook(
        conn,
        event.event_id,
        event.event_type,
        event.payment.payment_key,
        event.payment.status,
        outcome,
    )


def _outcome(payment: Payment | None, payment_key: str) -> str:
    """What a webhook does to the payment it names: apply (while its confirm is in
    flight), or nothing, and why (store.record_settled_webhook decides alike)."""
    if payment is None:
        return "unknown_order"
    if payment.payment_key not in (None, payment_key):
        return "payment_key_mismatch"
    if payment.status in store.IN_FLIGHT:
        return "apply"
    return "no_change"  # late, or out of order: the hub's state is ahead


# Background work


async def recover(hub: Payments) -> dict[str, int]:
    """One round of the recovery job: expire abandoned requests, resolve unknown or stale
    confirms and refunds, forget expired idempotency keys."""
    stale = timedelta(seconds=hub.settings.confirm_stale_seconds)
    async with hub.pool.acquire() as conn:
        expired = await store.expire_requests(conn, hub.order_window)
        payments = await store.unsettled(conn, stale)
        for payment in payments:
            await resolve(hub, conn, payment)
        refunds = await store.unsettled_refunds(conn, stale)
        for pending in refunds:
            refunded = await store.by_id(conn, pending.payment_id)
            assert refunded is not None
            await send_cancel(hub, conn, refunded, pending)
    pruned = await idempotency.prune(hub.pool)
    return {
        "expired": len(expired),
        "payments": len(payments),
        "refunds": len(refunds),
        "keys_pruned": pruned,
    }


NOTICE_LEASE = timedelta(seconds=60)
NOTICES_AT_ONCE = 20


async def deliver_notices(hub: Payments) -> int:
    """Send the due receipt and cancel notices; returns how many were answered. The
    answers are stored in one statement (a notice answered but not stored is sent again
    after its lease: the tax system records a receipt number once)."""
    async with hub.pool.acquire() as conn:
        due = await store.claim_notices(conn, NOTICE_LEASE, limit=NOTICES_AT_ONCE)
    acks = await asyncio.gather(*(_deliver(hub, notice) for notice in due))
    answered = [(notice, ack) for notice, ack in zip(due, acks, strict=True) if ack is not None]
    if not answered:
        return 0
    async with hub.pool.acquire() as conn:
        await store.answer_notices(
            conn, [(notice.notice_id, ack.outcome.value, ack.detail) for notice, ack in answered]
        )
        for notice, ack in answered:
            await _answered(hub, conn, notice, ack)
    return len(answered)


async def _deliver(hub: Payments, notice: store.Notice) -> NoticeAck | None:
    """The tax system's answer to a notice; None when it gave none (tried again later)."""
    tax = await hub.upstreams.tax()
    sent = ReceiptNotice(
        receipt_no=notice.receipt_no,
        epay_no=notice.epay_no,
        amount=notice.amount,
        occurred_at=notice.occurred_at,
        approval_no=notice.approve_no or "",
    )
    try:
        if notice.kind == "receipt":
            return await tax.notify_receipt(sent)
        return await tax.notify_cancel(sent)
    except UpstreamError as exc:
        wait = min(2.0**notice.attempts, hub.settings.notice_retry_max_seconds)
        async with hub.pool.acquire() as conn:
            await store.retry_notice(conn, notice.notice_id, timedelta(seconds=wait), str(exc))
        return None


async def _answered(
    hub: Payments, conn: asyncpg.Connection, notice: store.Notice, ack: NoticeAck
) -> None:
    """What an answer stored calls for: a refund of a bill paid elsewhere meanwhile."""
    if ack.outcome is NoticeOutcome.ALREADY_PAID and notice.kind == "receipt":
        log.warning("payments.paid_elsewhere receipt=%s: refunding", notice.receipt_no)
        try:
            await _refund(
                hub,
                conn,
                "hub",
                notice.payment_id,
                None,
                "이미 다른 경로로 납부된 고지서 (paid through another channel)",
                automatic=True,
            )
        except (errors.NotRefundable, errors.RefundExceedsBalance) as exc:
            log.info("payments.auto_refund_skipped receipt=%s reason=%s", notice.receipt_no, exc)
    elif ack.outcome is NoticeOutcome.REJECTED:
        log.error(
            "payments.notice_rejected kind=%s receipt=%s detail=%s",
            notice.kind,
            notice.receipt_no,
            ack.detail,
        )
