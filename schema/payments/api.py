"""Queries, mutations and the subscription of the payments domain.

Who sees what: a terminal or a citizen sees its own payments; supervisors and finance
staff see every payment; ledger and reconciliation are finance's. Every mutation a client
may retry takes an `idempotencyKey` (the first answer is replayed for 24 h).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncGenerator
from datetime import date, datetime
from typing import Annotated

import strawberry
from aiokafka.errors import KafkaError

from auth import audit
from hub.core.context import Info
from hub.core.errors import BadUserInput, Forbidden
from resolvers.payments import errors, ledger, outbox, reconciliation, scopes, store, terminals
from resolvers.payments.store import Payment as PaymentRecord
from schema.pagination import Connection, aware_time, check_first, page_of, read_cursor, uuid_part
from schema.payments import flow
from schema.payments.state import PaymentsState, hub_of
from schema.payments.types import (
    EnrollTerminalInput,
    Payment,
    PaymentStatus,
    RefundResult,
    TaxBill,
    Terminal,
    bill_of,
    payment_of,
    refund_of,
    terminal_of,
)

log = logging.getLogger(__name__)
COLLECTORS = [[scopes.COLLECT.name], [scopes.PAY.name]]
STAFF = [[scopes.SUPERVISE.name], [scopes.FINANCE.name]]
ANYONE = COLLECTORS + STAFF
SUPERVISE = [[scopes.SUPERVISE.name]]
FINANCE = [[scopes.FINANCE.name]]
MAX_PAGE = 500
FINAL = ("confirmed", "failed", "expired", "refunded")
KEY = strawberry.argument(
    description="Unique per request (a UUID v4); send the same key again to retry safely."
)


def _staff(info: Info) -> bool:
    held = info.context.caller.scopes
    return scopes.SUPERVISE.name in held or scopes.FINANCE.name in held


def _own(info: Info, record: PaymentRecord) -> bool:
    """Made by this client, and by this citizen when the token is a citizen's."""
    caller = info.context.caller
    citizen = caller.user_id
    return record.client_id == caller.client_id and (
        citizen is None or str(record.user_id) == citizen
    )


def _visible(info: Info, record: PaymentRecord | None) -> PaymentRecord:
    if record is None or not (_staff(info) or _own(info, record)):
        raise errors.PaymentNotFound("no such payment of yours")
    return record


async def _audit(info: Info, records: list[PaymentRecord]) -> None:
    """Payments carry the payer's (masked) name: the read is logged before it is shown."""
    if records:
        await audit.read(
            info,
            action="payer.read",
            subject_type="payment",
            subjects=[str(record.payment_id) for record in records],
            fields=["payer_name", "epay_no"],
        )


async def _audited(info: Info, records: list[PaymentRecord]) -> list[Payment]:
    await _audit(info, records)
    return [payment_of(record) for record in records]


def _key(record: PaymentRecord) -> tuple[str, str]:
    """A payment's place in `payments`: newest first, the id breaking ties."""
    return record.requested_at.isoformat(), str(record.payment_id)


def _after(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    """The key a cursor of `payments` holds (its requested_at and id)."""
    return read_cursor(cursor, aware_time, uuid_part)


@strawberry.type
class LedgerBalance:
    account: str = strawberry.field(
        description="gateway_receivable, revenue:<tax kind>:<district>, refunds_payable,"
        " fees:gateway, bank:settlement."
    )
    debit: int
    credit: int
    balance: int = strawberry.field(description="Signed by the account's normal side.")


@strawberry.type
class ReconciliationItem:
    kind: str = strawberry.field(
        description="missing_in_hub, missing_at_gateway or amount_mismatch."
    )
    order_id: str
    payment_key: str | None
    transaction_key: str | None
    hub_amount: int | None
    gateway_amount: int | None
    explanation: str


@strawberry.type(description="One day's reconciliation against the gateway's settlement file.")
class ReconciliationReport:
    day: date
    matched: int
    missing_in_hub: int
    missing_at_gateway: int
    amount_mismatch: int
    gateway_amount: int
    hub_amount: int
    gateway_fees: int
    items: list[ReconciliationItem]


def _report(found: reconciliation.Report) -> ReconciliationReport:
    return ReconciliationReport(
        day=found.day,
        matched=found.matched,
        missing_in_hub=found.missing_in_hub,
        missing_at_gateway=found.missing_at_gateway,
        amount_mismatch=found.amount_mismatch,
        gateway_amount=found.gateway_amount,
        hub_amount=found.hub_amount,
        gateway_fees=found.gateway_fees,
        items=[
            ReconciliationItem(
                kind=item.kind,
                order_id=item.order_id,
                payment_key=item.payment_key,
                transaction_key=item.transaction_key,
                hub_amount=item.hub_amount,
                gateway_amount=item.gateway_amount,
                explanation=item.explanation,
            )
            for item in found.items
        ],
    )


@strawberry.type
class PaymentsQuery:
    @strawberry.federation.field(
        requires_scopes=ANYONE,
        description="A bill from the tax system by its 전자납부번호 (a terminal: its district's"
        " bills only). The read of the payer's identity is audited.",
    )
    async def tax_bill(
        self, info: Info, epay_no: Annotated[str, strawberry.argument(description="19 characters.")]
    ) -> TaxBill | None:
        hub = hub_of(info)
        bill = await (await hub.upstreams.tax()).bill(epay_no)
        if bill is None:
            return None
        if scopes.COLLECT.name in info.context.caller.scopes and not _staff(info):
            who = await flow.collector(info.context.db, info.context.caller)
            if who.terminal is not None and who.terminal.district_code != bill.district_code:
                raise errors.OutsideDistrict(
                    f"bill {epay_no} belongs to district {bill.district_code}, not this"
                    f" terminal's {who.terminal.district_code}"
                )
        await audit.read(
            info,
            action="payer.read",
            subject_type="tax_bill",
            subjects=[bill.epay_no],
            fields=["payer_name", "tax_no"],
        )
        return bill_of(bill, flow.mask_name(bill.payer_name))

    @strawberry.federation.field(
        requires_scopes=SUPERVISE,
        description="A payer's bills as the tax system lists them, unpaid first. Audited.",
    )
    async def tax_bills_of_payer(self, info: Info, payer_id: str) -> list[TaxBill]:
        bills = await (await hub_of(info).upstreams.tax()).bills_of(payer_id)
        if bills:
            await audit.read(
                info,
                action="payer.read",
                subject_type="tax_bill",
                subjects=[bill.epay_no for bill in bills],
                fields=["payer_name", "tax_no", "payer_id"],
            )
        return [bill_of(bill, flow.mask_name(bill.payer_name)) for bill in bills]

    @strawberry.federation.field(
        requires_scopes=ANYONE, description="A payment by its id or its order id."
    )
    async def payment(
        self, info: Info, id: uuid.UUID | None = None, order_id: str | None = None
    ) -> Payment:
        if (id is None) == (order_id is None):
            raise BadUserInput("give either id or orderId")
        db = info.context.db
        record = await (store.by_id(db, id) if id else store.by_order(db, order_id or ""))
        return (await _audited(info, [_visible(info, record)]))[0]

    @strawberry.federation.field(
        requires_scopes=ANYONE,
        description="Payments newest first: your own, or (supervisors, finance) anyone's;"
        " a page of `first`, the next one `after` its `pageInfo.endCursor`.",
    )
    async def payments(
        self,
        info: Info,
        status: PaymentStatus | None = None,
        day: Annotated[
            date | None, strawberry.argument(description="Korean date it was collected.")
        ] = None,
        terminal_id: str | None = None,
        district_code: str | None = None,
        first: Annotated[int, strawberry.argument(description="1 to 500.")] = 50,
        after: Annotated[
            str | None, strawberry.argument(description="The endCursor of the page before.")
        ] = None,
    ) -> Connection[Payment]:
        check_first(first, MAX_PAGE)
        caller, staff = info.context.caller, _staff(info)
        records = await store.listing(
            info.context.db,
            client_id=None if staff else caller.client_id,
            user_id=None if staff or caller.user_id is None else uuid.UUID(caller.user_id),
            terminal_id=terminal_id,
            district_code=district_code,
            status=status.value if status else None,
            day=day,
            after=_after(after),
            limit=first + 1,
        )
        await _audit(info, records[:first])
        return page_of(records, first, node=payment_of, key=_key, after=after)

    @strawberry.federation.field(requires_scopes=ANYONE, description="A receipt by its number.")
    async def receipt_payment(self, info: Info, number: str) -> Payment:
        record = await store.by_receipt(info.context.db, number)
        return (await _audited(info, [_visible(info, record)]))[0]

    @strawberry.federation.field(
        requires_scopes=SUPERVISE, description="Enrolled terminals, of one district or all."
    )
    async def payment_terminals(
        self, info: Info, district_code: str | None = None
    ) -> list[Terminal]:
        return [terminal_of(t) for t in await terminals.listing(info.context.db, district_code)]

    @strawberry.federation.field(
        requires_scopes=FINANCE,
        description="Ledger balances per account (all, or those starting with `prefix`).",
    )
    async def ledger_balances(self, info: Info, prefix: str | None = None) -> list[LedgerBalance]:
        return [
            LedgerBalance(account=b.account, debit=b.debit, credit=b.credit, balance=b.balance)
            for b in await ledger.balances(info.context.db, prefix)
        ]

    @strawberry.federation.field(
        requires_scopes=FINANCE, description="The stored reconciliation of one Korean day."
    )
    async def reconciliation(self, info: Info, day: date) -> ReconciliationReport | None:
        found = await reconciliation.stored_report(info.context.db, day)
        return _report(found) if found else None


@strawberry.type
class PaymentsMutation:
    @strawberry.federation.field(
        requires_scopes=COLLECTORS,
        description="Start collecting a bill: checks the bill, the terminal's district and"
        " daily limit, and opens a payment whose orderId and amount the card reader uses.",
    )
    async def collect_bill(
        self, info: Info, epay_no: str, idempotency_key: Annotated[str, KEY]
    ) -> Payment:
        hub = hub_of(info)
        who = flow.caller_collector(info.context.caller)  # its terminal read with the key
        record = await flow.collect(hub, who, epay_no, idempotency_key)
        return (await _audited(info, [record]))[0]

    @strawberry.federation.field(
        requires_scopes=COLLECTORS,
        description="Confirm the payment the card reader started. Status UNKNOWN means the"
        " gateway's answer was lost: the hub finds out by itself (query or subscribe).",
    )
    async def confirm_payment(
        self,
        info: Info,
        order_id: str,
        payment_key: str,
        amount: int,
        idempotency_key: Annotated[str, KEY],
    ) -> Payment:
        hub = hub_of(info)
        who = flow.caller_collector(info.context.caller)  # its terminal read with the key
        record = await flow.confirm(hub, who, order_id, payment_key, amount, idempotency_key)
        return (await _audited(info, [record]))[0]

    @strawberry.federation.field(
        requires_scopes=SUPERVISE,
        description="Refund all (amount null) or part of a confirmed payment; the ledger"
        " books the reversal and the tax system is told.",
    )
    async def refund_payment(
        self,
        info: Info,
        payment_id: uuid.UUID,
        reason: str,
        idempotency_key: Annotated[str, KEY],
        amount: int | None = None,
    ) -> RefundResult:
        record, refund = await flow.refund(
            hub_of(info),
            info.context.caller.client_id or "",
            payment_id,
            amount,
            reason,
            idempotency_key,
        )
        return RefundResult(payment=(await _audited(info, [record]))[0], refund=refund_of(refund))

    @strawberry.federation.field(
        requires_scopes=SUPERVISE, description="Enroll an official's phone as a terminal."
    )
    async def enroll_terminal(self, info: Info, input: EnrollTerminalInput) -> Terminal:
        state = info.context.state(PaymentsState)
        if not (len(input.district_code) == 5 and input.district_code.isdigit()):
            raise BadUserInput("districtCode is a 5-digit code", argument="districtCode")
        limit = input.daily_limit or state.settings.default_daily_limit
        if limit <= 0:
            raise BadUserInput("dailyLimit must be positive", argument="dailyLimit")
        if not isinstance(input.jwks, dict):
            raise BadUserInput("jwks must be a JWK set object", argument="jwks")
        try:
            record = await terminals.enroll(
                info.context.db,
                district_code=input.district_code,
                department=input.department,
                official=input.official,
                daily_limit=limit,
                jwks=input.jwks,
                enrolled_by=info.context.caller.client_id or "",
            )
        except ValueError as exc:  # auth.clients.ClientError: the key set is unusable
            raise BadUserInput(str(exc), argument="jwks") from None
        return terminal_of(record)

    @strawberry.federation.field(
        requires_scopes=SUPERVISE,
        description="Disable a terminal at once (a lost phone): its tokens stop working.",
    )
    async def disable_terminal(self, info: Info, terminal_id: str, reason: str) -> Terminal:
        record = await terminals.disable(info.context.db, terminal_id, reason)
        if record is None:
            raise errors.TerminalNotEnrolled(f"no terminal {terminal_id}")
        return terminal_of(record)

    @strawberry.federation.field(
        requires_scopes=FINANCE,
        description="Reconcile one Korean day against the gateway's settlement file now"
        " (the daily job does it after midnight); replaces that day's report.",
    )
    async def reconcile(self, info: Info, day: date) -> ReconciliationReport:
        hub = hub_of(info)
        gateway = await hub.upstreams.gateway()
        return _report(
            await reconciliation.reconcile(hub.pool, day, await gateway.settlements(day))
        )


@strawberry.type
class PaymentsSubscription:
    @strawberry.subscription(
        description="A payment's status as it changes, until it is final (confirmed,"
        " failed, expired or refunded). The first value is its status now."
    )
    async def payment_status(self, info: Info, order_id: str) -> AsyncGenerator[Payment, None]:
        if not set(info.context.caller.scopes) & {s[0] for s in ANYONE}:
            raise Forbidden("needs payments:collect, payments:pay or a staff scope")
        db = info.context.db
        state = info.context.state(PaymentsState)
        record = _visible(info, await store.by_order(db, order_id))
        yield (await _audited(info, [record]))[0]
        changed = asyncio.Event()
        follower = asyncio.create_task(_watch(state, str(record.payment_id), changed))
        try:
            while record.status not in FINAL:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), 1.0)  # an event, or look anyway
                changed.clear()
                now = await store.by_order(db, order_id)
                if now is not None and now.status != record.status:
                    record = now
                    yield (await _audited(info, [record]))[0]
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower


async def _watch(state: PaymentsState, payment_id: str, changed: asyncio.Event) -> None:
    """Set `changed` on each event of this payment from the events topic (the database
    is read again every second anyway, so a broker away only slows the updates)."""
    if state.broker is None:
        return
    try:
        async with contextlib.aclosing(
            outbox.follow(state.broker, state.settings.events_topic)
        ) as events:
            async for event in events:
                if event.get("key") == payment_id:
                    changed.set()
    except (KafkaError, OSError) as exc:  # the 1 s re-read carries on without events
        log.info("payments.status_events_unavailable error=%r", exc)
