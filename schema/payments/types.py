"""GraphQL types of the payments domain. Amounts are integer won; times are ISO 8601."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import Enum

import strawberry
from strawberry.scalars import JSON

from adapters.kinds import TaxBill as BillRecord
from hub.core.context import Info
from resolvers.payments import store
from resolvers.payments.store import Payment as PaymentRecord
from resolvers.payments.store import Refund as RefundRecord
from resolvers.payments.terminals import Terminal as TerminalRecord
from schema.cost import FieldCost


@strawberry.enum(description="TAX_GB: which revenue system a bill belongs to.")
class TaxKind(Enum):
    LOCAL_TAX = 1
    NON_TAX = 2
    WATER = 3


@strawberry.enum(
    description="requested → confirming → confirmed | failed | unknown; unknown → confirmed |"
    " failed; confirmed → partially_refunded → refunded; requested → expired."
)
class PaymentStatus(Enum):
    REQUESTED = "requested"
    CONFIRMING = "confirming"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    UNKNOWN = "unknown"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    EXPIRED = "expired"


@strawberry.enum
class RefundStatus(Enum):
    REQUESTED = "requested"
    DONE = "done"
    FAILED = "failed"
    UNKNOWN = "unknown"


@strawberry.type(description="A bill (고지서) as the tax system holds it. Reads are audited.")
class TaxBill:
    epay_no: str = strawberry.field(description="전자납부번호, 19 characters.")
    tax_kind: TaxKind
    tax_no: str = strawberry.field(description="납세번호.")
    district_code: str = strawberry.field(description="5-digit code of the collecting district.")
    payer_name: str = strawberry.field(description="The payer's name, masked (김*수).")
    item_code: str = strawberry.field(description="세목 code.")
    item: str = strawberry.field(description="세목, e.g. 주정차위반 과태료.")
    amount: int = strawberry.field(description="본세: due on or before dueDate, in won.")
    late_fee: int = strawberry.field(description="가산금 added after dueDate, in won.")
    due_date: date
    amount_due: int = strawberry.field(description="What is owed today (Korean time), in won.")
    paid: bool


def bill_of(record: BillRecord, masked_name: str) -> TaxBill:
    return TaxBill(
        epay_no=record.epay_no,
        tax_kind=TaxKind(int(record.tax_kind)),
        tax_no=record.tax_no,
        district_code=record.district_code,
        payer_name=masked_name,
        item_code=record.item_code,
        item=record.item,
        amount=record.amount,
        late_fee=record.late_fee,
        due_date=record.due_date,
        amount_due=record.amount_due(store.korea_today()),
        paid=record.paid,
    )


@strawberry.type(description="A line of a receipt.")
class ReceiptItem:
    name: str
    amount: int


@strawberry.type(description="The receipt (영수증) of a confirmed payment.")
class Receipt:
    number: str
    approval_no: str = strawberry.field(description="The card approval number (승인번호).")
    card_number: str = strawberry.field(description="The card number as the gateway masks it.")
    method: str
    payer_name: str = strawberry.field(description="Masked.")
    district_code: str
    epay_no: str | None
    items: list[ReceiptItem] = strawberry.field(
        description="The bill's item, and its late fee (가산금) if any.",
        metadata=FieldCost(size=2).metadata(),
    )
    amount: int
    refunded_amount: int
    paid_at: datetime
    print_path: str = strawberry.field(
        description="Path of the printable page on this hub (needs the same token)."
    )


@strawberry.type(description="A refund of all or part of a payment.")
class Refund:
    id: uuid.UUID
    amount: int
    reason: str
    status: RefundStatus
    automatic: bool = strawberry.field(
        description="Made by the hub itself (the bill was paid through another channel)."
    )
    requested_at: datetime
    done_at: datetime | None
    failure_code: str | None


def refund_of(record: RefundRecord) -> Refund:
    return Refund(
        id=record.refund_id,
        amount=record.amount,
        reason=record.reason,
        status=RefundStatus(record.status),
        automatic=record.automatic,
        requested_at=record.requested_at,
        done_at=record.done_at,
        failure_code=record.failure_code,
    )


@strawberry.type(description="One attempt to collect one bill.")
class Payment:
    record: strawberry.Private[PaymentRecord]
    id: uuid.UUID
    order_id: str = strawberry.field(
        description="The order id the card reader and the gateway know the payment by."
    )
    status: PaymentStatus
    source: str = strawberry.field(
        description="What is paid: tax_bill (a tax system's bill) or the domain that charged"
        " (e.g. waste)."
    )
    reference: str | None = strawberry.field(description="That domain's own id of the charge.")
    epay_no: str | None = strawberry.field(description="전자납부번호 of a tax bill.")
    tax_kind: TaxKind
    district_code: str
    item: str
    payer_name: str = strawberry.field(description="Masked.")
    amount: int = strawberry.field(description="What is charged: base amount plus late fee.")
    base_amount: int
    late_fee: int
    refunded_amount: int
    channel: str = strawberry.field(description="terminal (an official's phone) or online.")
    terminal_id: str | None
    requested_at: datetime
    confirmed_at: datetime | None
    failure_code: str | None = strawberry.field(description="The gateway's code when failed.")
    failure_message: str | None

    @strawberry.field(description="The receipt, once confirmed.")
    def receipt(self) -> Receipt | None:
        return receipt_of(self.record)

    @strawberry.field(description="Refunds of this payment, oldest first.")
    async def refunds(self, info: Info) -> list[Refund]:
        return [
            refund_of(r) for r in await store.refunds_of(info.context.db, self.record.payment_id)
        ]


def payment_of(record: PaymentRecord) -> Payment:
    return Payment(
        record=record,
        id=record.payment_id,
        order_id=record.order_id,
        status=PaymentStatus(record.status),
        source=record.source,
        reference=record.reference,
        epay_no=record.epay_no,
        tax_kind=TaxKind(record.tax_kind),
        district_code=record.district_code,
        item=record.item,
        payer_name=record.payer_masked,
        amount=record.amount,
        base_amount=record.base_amount,
        late_fee=record.late_fee,
        refunded_amount=record.refunded_amount,
        channel=record.channel,
        terminal_id=record.terminal_id,
        requested_at=record.requested_at,
        confirmed_at=record.confirmed_at,
        failure_code=record.failure_code,
        failure_message=record.failure_message,
    )


def receipt_of(record: PaymentRecord) -> Receipt | None:
    if record.receipt_no is None or record.confirmed_at is None:
        return None
    items = [ReceiptItem(name=record.item, amount=record.base_amount)]
    if record.late_fee:
        items.append(ReceiptItem(name="가산금", amount=record.late_fee))
    return Receipt(
        number=record.receipt_no,
        approval_no=record.approve_no or "",
        card_number=record.card_number or "",
        method=record.method or "",
        payer_name=record.payer_masked,
        district_code=record.district_code,
        epay_no=record.epay_no,
        items=items,
        amount=record.amount,
        refunded_amount=record.refunded_amount,
        paid_at=record.confirmed_at,
        print_path=f"/payments/receipts/{record.receipt_no}",
    )


@strawberry.type(description="An official's phone enrolled as a card terminal.")
class Terminal:
    id: str = strawberry.field(description="Its OAuth client id (private_key_jwt).")
    district_code: str
    department: str
    official: str
    daily_limit: int
    enrolled_at: datetime
    disabled_at: datetime | None
    disabled_reason: str | None


def terminal_of(record: TerminalRecord) -> Terminal:
    return Terminal(
        id=record.terminal_id,
        district_code=record.district_code,
        department=record.department,
        official=record.official,
        daily_limit=record.daily_limit,
        enrolled_at=record.enrolled_at,
        disabled_at=record.disabled_at,
        disabled_reason=record.disabled_reason,
    )


@strawberry.type(description="A payment and the refund just made of it.")
class RefundResult:
    payment: Payment
    refund: Refund


@strawberry.input(description="An official's phone to enroll as a terminal.")
class EnrollTerminalInput:
    district_code: str = strawberry.field(description="The district it collects for.")
    department: str
    official: str = strawberry.field(description="The official it is bound to.")
    jwks: JSON = strawberry.field(
        description="The phone's public JWK set: it signs private_key_jwt assertions."
    )
    daily_limit: int | None = strawberry.field(
        default=None, description="Won per day; IEUM_PAYMENTS_DEFAULT_DAILY_LIMIT if null."
    )
