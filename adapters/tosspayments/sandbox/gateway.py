"""The sandbox gateway's books: card sessions, payments, cancels, and the transactions its
settlement file lists. No HTTP here: `app.py` speaks Toss's API over these.

A card tapped on a phone opens a session (the payment IN_PROGRESS); the merchant confirms
it within 10 minutes (DONE, money moved) or it expires; a test card may be declined at
confirm (ABORTED). Cancels take all or part of what is left.
"""

from __future__ import annotations

import itertools
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from adapters.tosspayments.wire import KST, timestamp

SESSION_TTL = timedelta(minutes=10)
MID = "tvivarepublica"  # Toss's test merchant id
API_VERSION = "2022-11-16"
DEFAULT_CARD = "4000000000001091"  # shown as 40000000****109*
METHOD = "카드"
SETTLED = frozenset({"DONE", "CANCELED", "PARTIAL_CANCELED"})
_ORDER_ID = re.compile(r"^[A-Za-z0-9_=-]{6,64}$")
_CARD = re.compile(r"^[0-9]{15,16}$")
_ISSUERS = {"4": "41", "5": "51", "9": "11"}  # 신한, 삼성, KB국민; others 31 (BC)

# Test cards by their last four digits: declined at confirm with Toss's code.
DECLINES: dict[str, tuple[int, str, str]] = {
    "0002": (403, "REJECT_CARD_PAYMENT", "한도초과 혹은 잔액부족으로 결제에 실패했습니다."),
    "0003": (403, "EXCEED_MAX_AUTH_COUNT", "최대 인증 횟수를 초과했습니다. 카드사로 문의해주세요."),
    "0004": (403, "REJECT_CARD_COMPANY", "결제 승인이 거절되었습니다."),
    "0005": (400, "INVALID_CARD_EXPIRATION", "카드 정보를 다시 확인해주세요. (유효기간)"),
    "0006": (400, "INVALID_STOPPED_CARD", "정지된 카드 입니다."),
}


class TossError(Exception):
    """An answer of Toss's error shape: HTTP status and `{code, message}`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


def invalid(message: str) -> TossError:
    return TossError(400, "INVALID_REQUEST", message)


@dataclass
class Cancel:
    transaction_key: str
    amount: int
    reason: str
    at: datetime
    refundable_after: int


@dataclass
class Payment:
    payment_key: str
    order_id: str
    order_name: str
    amount: int
    card_number: str
    requested_at: datetime
    status: str = "IN_PROGRESS"
    approved_at: datetime | None = None
    approve_no: str = ""
    last_transaction_key: str | None = None
    failure: TossError | None = None
    cancels: list[Cancel] = field(default_factory=list)

    @property
    def balance(self) -> int:
        return self.amount - sum(cancel.amount for cancel in self.cancels)


@dataclass(frozen=True)
class Transaction:
    """Money that moved: a line of the settlement file of its KST date."""

    kind: str  # PAYMENT or CANCEL
    payment_key: str
    order_id: str
    transaction_key: str
    amount: int  # negative for a cancel
    at: datetime

    @property
    def day(self) -> date:
        return self.at.astimezone(KST).date()


class Gateway:
    def __init__(self, now: Callable[[], datetime]) -> None:
        self.now = now
        self.payments: dict[str, Payment] = {}
        self.orders: dict[str, str] = {}  # order id -> its latest payment key
        self.transactions: list[Transaction] = []
        self._approvals = itertools.count(1)

    def open_session(self, order_id: str, order_name: str, amount: int, card: str) -> Payment:
        """What the SoftPOS SDK does once the card is read: a session to confirm."""
        if not _ORDER_ID.match(order_id):
            raise invalid("orderId는 영문 대소문자, 숫자, -, _, = 로 6자 이상 64자 이하입니다.")
        if amount <= 0:
            raise invalid("결제 금액은 0보다 커야 합니다.")
        if not _CARD.match(card):
            raise TossError(400, "INVALID_CARD_NUMBER", "카드번호를 다시 확인해주세요.")
        earlier = self._by_order(order_id)
        if earlier is not None and earlier.status in SETTLED:
            raise TossError(
                400, "DUPLICATED_ORDER_ID", "이미 승인 및 취소가 진행된 중복된 주문번호 입니다."
            )
        if earlier is not None and earlier.status == "IN_PROGRESS":
            earlier.status = "EXPIRED"  # a new tap replaces the unconfirmed session
        now = self.now()
        key = f"tsbx{now.astimezone(KST):%Y%m%d%H%M%S}{secrets.token_hex(6)}"
        payment = Payment(key, order_id, order_name[:100], amount, card, now)
        self.payments[key] = payment
        self.orders[order_id] = key
        return payment

    def confirm(self, payment_key: str, order_id: str, amount: int) -> Payment:
        payment = self._fresh(self.payments.get(payment_key))
        if payment is None or payment.status == "EXPIRED":
            raise TossError(
                404,
                "NOT_FOUND_PAYMENT_SESSION",
                "결제 시간이 만료되어 결제 진행 데이터가 존재하지 않습니다.",
            )
        if order_id != payment.order_id:
            raise invalid("orderId가 결제 정보의 주문번호와 일치하지 않습니다.")
        if amount != payment.amount:
            raise invalid("결제 금액이 결제 정보의 금액과 일치하지 않습니다.")
        if payment.status != "IN_PROGRESS":
            raise TossError(400, "ALREADY_PROCESSED_PAYMENT", "이미 처리된 결제 입니다.")
        declined = DECLINES.get(payment.card_number[-4:])
        if declined is not None:
            payment.status, payment.failure = "ABORTED", TossError(*declined)
            raise payment.failure
        payment.status, payment.approved_at = "DONE", self.now()
        payment.approve_no = f"{next(self._approvals):08d}"
        payment.last_transaction_key = self._book("PAYMENT", payment, payment.amount)
        return payment

    def cancel(self, payment_key: str, amount: int | None, reason: str) -> Payment:
        payment = self.payment(payment_key)
        if payment.status == "CANCELED":
            raise TossError(400, "ALREADY_CANCELED_PAYMENT", "이미 취소된 결제 입니다.")
        if payment.status not in SETTLED:
            raise TossError(403, "NOT_CANCELABLE_PAYMENT", "취소 할 수 없는 결제 입니다.")
        amount = payment.balance if amount is None else amount
        if amount > payment.balance:
            raise TossError(403, "NOT_CANCELABLE_AMOUNT", "취소 할 수 없는 금액 입니다.")
        key = self._book("CANCEL", payment, -amount)
        payment.cancels.append(Cancel(key, amount, reason, self.now(), payment.balance - amount))
        payment.last_transaction_key = key
        payment.status = "CANCELED" if payment.balance == 0 else "PARTIAL_CANCELED"
        return payment

    def payment(self, payment_key: str) -> Payment:
        payment = self._fresh(self.payments.get(payment_key))
        if payment is None:
            raise TossError(404, "NOT_FOUND_PAYMENT", "존재하지 않는 결제 정보 입니다.")
        return payment

    def by_order(self, order_id: str) -> Payment:
        payment = self._by_order(order_id)
        if payment is None:
            raise TossError(404, "NOT_FOUND_PAYMENT", "존재하지 않는 결제 정보 입니다.")
        return payment

    def transactions_on(self, day: date) -> list[Transaction]:
        return [transaction for transaction in self.transactions if transaction.day == day]

    def _by_order(self, order_id: str) -> Payment | None:
        key = self.orders.get(order_id)
        return self._fresh(self.payments[key]) if key else None

    def _fresh(self, payment: Payment | None) -> Payment | None:
        """The payment with an unconfirmed session past its 10 minutes marked EXPIRED."""
        if (
            payment is not None
            and payment.status == "IN_PROGRESS"
            and self.now() - payment.requested_at > SESSION_TTL
        ):
            payment.status = "EXPIRED"
        return payment

    def _book(self, kind: str, payment: Payment, amount: int) -> str:
        key = uuid.uuid4().hex.upper()
        self.transactions.append(
            Transaction(kind, payment.payment_key, payment.order_id, key, amount, self.now())
        )
        return key


def masked(card: str) -> str:
    """Toss's mask: digits 9–12 and the last one hidden, 4000000000001091 → 40000000****109*."""
    return f"{card[:8]}****{card[12:-1]}*"


def rendered(payment: Payment) -> dict[str, Any]:
    """The payment object as Toss's API writes it (v2022-11-16, a card payment)."""
    balance = payment.balance
    vat = (2 * balance + 11) // 22  # balance / 11, half up: the VAT inside the balance
    issuer = _ISSUERS.get(payment.card_number[0], "31")
    return {
        "mId": MID,
        "version": API_VERSION,
        "lastTransactionKey": payment.last_transaction_key,
        "paymentKey": payment.payment_key,
        "orderId": payment.order_id,
        "orderName": payment.order_name,
        "taxExemptionAmount": 0,
        "status": payment.status,
        "requestedAt": timestamp(payment.requested_at),
        "approvedAt": timestamp(payment.approved_at) if payment.approved_at else None,
        "useEscrow": False,
        "cultureExpense": False,
        "card": {
            "issuerCode": issuer,
            "acquirerCode": issuer,
            "number": masked(payment.card_number),
            "installmentPlanMonths": 0,
            "isInterestFree": False,
            "interestPayer": None,
            "approveNo": payment.approve_no or None,
            "useCardPoint": False,
            "cardType": "신용",
            "ownerType": "개인",
            "acquireStatus": "READY",
            "amount": payment.amount,
        },
        "virtualAccount": None,
        "transfer": None,
        "mobilePhone": None,
        "giftCertificate": None,
        "cashReceipt": None,
        "cashReceipts": None,
        "discount": None,
        "cancels": [
            {
                "transactionKey": cancel.transaction_key,
                "cancelReason": cancel.reason,
                "taxExemptionAmount": 0,
                "canceledAt": timestamp(cancel.at),
                "transferDiscountAmount": 0,
                "easyPayDiscountAmount": 0,
                "receiptKey": None,
                "cancelAmount": cancel.amount,
                "taxFreeAmount": 0,
                "refundableAmount": cancel.refundable_after,
                "cancelStatus": "DONE",
                "cancelRequestId": None,
            }
            for cancel in payment.cancels
        ]
        or None,
        "secret": None,
        "type": "NORMAL",
        "easyPay": None,
        "country": "KR",
        "failure": payment.failure.body() if payment.failure else None,
        "isPartialCancelable": True,
        "receipt": None,
        "checkout": None,
        "currency": "KRW",
        "totalAmount": payment.amount,
        "balanceAmount": balance,
        "suppliedAmount": balance - vat,
        "vat": vat,
        "taxFreeAmount": 0,
        "method": METHOD,
    }
