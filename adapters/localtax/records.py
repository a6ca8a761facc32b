"""The sandbox tax system's books: bills, receipts and cancels, in memory, with its rules.

Every method runs without awaiting, so on the sandbox's event loop each call is atomic:
two notices for one bill at once are decided one after the other, never both accepted.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import date, datetime

from adapters.kinds import TaxKind
from adapters.localtax.wire import EPAY_NO_LENGTH, KST, TIME, Result


@dataclass
class Bill:
    epay_no: str
    tax_kind: TaxKind
    tax_no: str
    district_code: str
    payer_id: str
    payer_name: str
    item_code: str
    item: str
    amount: int
    late_fee: int
    due_date: date
    receipt_no: str | None = None  # the receipt that pays it now; None while unpaid
    receipts: list[str] = field(default_factory=list)  # every receipt it ever had
    payer_ref: str = ""  # the payer's pseudonym for notices ("" when the CI is unknown)
    feed_seq: int = 0  # its place in the feed of issued bills (set when added)

    def amount_due(self, on: date) -> int:
        return self.amount + (self.late_fee if on > self.due_date else 0)


@dataclass
class Receipt:
    receipt_no: str
    epay_no: str
    amount: int
    paid_at: datetime
    approval_no: str
    channel: str  # the institution code that sent the notice, or "bank", "ars" …
    cancelled: int = 0
    deliveries: int = 1  # notices received with this receipt number


@dataclass
class Cancel:
    cancel_no: str
    receipt_no: str
    epay_no: str
    amount: int
    cancelled_at: datetime
    approval_no: str
    channel: str
    deliveries: int = 1


@dataclass(frozen=True)
class Decision:
    code: Result
    message: str
    body: dict[str, str] = field(default_factory=dict)


class Books:
    def __init__(self) -> None:
        self.bills: dict[str, Bill] = {}
        self.receipts: dict[str, Receipt] = {}
        self.cancels: dict[str, Cancel] = {}
        self._of_payer: dict[str, list[Bill]] = {}
        self.feed: list[Bill] = []  # in the order they were issued (feed_seq 1, 2, …)
        self._serial = itertools.count(1)
        self._other_receipts = itertools.count(1)

    def new_epay_no(self, district: str, kind: TaxKind, year: int, item_code: str) -> str:
        """기관코드 (5) + 종류 (1) + 연도 (2) + 세목 (2) + 일련번호 (9)."""
        number = f"{district}{int(kind)}{year % 100:02d}{item_code}{next(self._serial):09d}"
        assert len(number) == EPAY_NO_LENGTH, number
        return number

    def add(self, bill: Bill) -> None:
        bill.feed_seq = len(self.feed) + 1
        self.feed.append(bill)
        self.bills[bill.epay_no] = bill
        self._of_payer.setdefault(bill.payer_id, []).append(bill)

    def issued_after(self, seq: int, rows: int) -> list[Bill]:
        """The feed: up to `rows` bills issued after the one numbered `seq`, in order."""
        return self.feed[max(seq, 0) : max(seq, 0) + rows]

    def of_payer(self, payer_id: str) -> list[Bill]:
        """Unpaid first, then by due date."""
        found = self._of_payer.get(payer_id, [])
        return sorted(found, key=lambda b: (b.receipt_no is not None, b.due_date, b.epay_no))

    def paid_elsewhere(self, epay_no: str, channel: str, paid_at: datetime) -> Receipt | None:
        """Record a payment through another channel (bank, ARS …); None if already paid."""
        bill = self.bills[epay_no]
        if bill.receipt_no is not None:
            return None
        paid_at = paid_at.astimezone(KST)
        number = f"{channel.upper()}{next(self._other_receipts):09d}"
        receipt = Receipt(number, epay_no, bill.amount_due(paid_at.date()), paid_at, "", channel)
        self._pay(bill, receipt)
        return receipt

    def receive(
        self,
        receipt_no: str,
        epay_no: str,
        amount: int,
        paid_at: datetime,
        approval_no: str,
        channel: str,
    ) -> Decision:
        """수납 통지."""
        known = self.receipts.get(receipt_no)
        if known is not None:
            return _again("receipt", known, (epay_no, amount, approval_no, channel))
        bill = self.bills.get(epay_no)
        if bill is None:
            return Decision(Result.NO_DATA, f"NODATA_ERROR: no bill with EPAY_NO {epay_no}")
        if bill.receipt_no is not None:
            paid = self.receipts[bill.receipt_no]
            return Decision(
                Result.ALREADY_PAID,
                f"ALREADY_PAID: paid through {paid.channel} at {paid.paid_at:%Y-%m-%d %H:%M:%S} "
                f"KST (receipt {paid.receipt_no})",
                {"PAID_CHNL": paid.channel, "PAID_DT": paid.paid_at.strftime(TIME)},
            )
        day = paid_at.astimezone(KST).date()
        due = bill.amount_due(day)
        if amount != due:
            late = f" (본세 {bill.amount} + 가산금 {bill.late_fee})" if due != bill.amount else ""
            return Decision(
                Result.AMOUNT_MISMATCH,
                f"AMOUNT_MISMATCH: {amount} won received; {due} won due on {day}{late}, "
                f"due date {bill.due_date}",
                {"DUE_AMT": str(due)},
            )
        moment = paid_at.astimezone(KST)
        self._pay(bill, Receipt(receipt_no, epay_no, amount, moment, approval_no, channel))
        return _recorded(receipt_no, epay_no, "NEW")

    def cancel(
        self,
        cancel_no: str,
        epay_no: str,
        amount: int,
        cancelled_at: datetime,
        approval_no: str,
        channel: str,
    ) -> Decision:
        """수납 취소 통지: cancels `amount` of the caller's receipt with that approval number."""
        known = self.cancels.get(cancel_no)
        if known is not None:
            return _again("cancel", known, (epay_no, amount, approval_no, channel))
        bill = self.bills.get(epay_no)
        if bill is None:
            return Decision(Result.NO_DATA, f"NODATA_ERROR: no bill with EPAY_NO {epay_no}")
        receipt = next(
            (
                found
                for found in (self.receipts[number] for number in bill.receipts)
                if (found.approval_no, found.channel) == (approval_no, channel)
                and found.cancelled < found.amount
            ),
            None,
        )
        if receipt is None:
            return Decision(
                Result.NO_RECEIPT,
                f"NO_RECEIPT: bill {epay_no} has no receipt of institution {channel} with "
                f"approval number {approval_no!r} left to cancel",
            )
        left = receipt.amount - receipt.cancelled
        if amount > left:
            return Decision(
                Result.CANCEL_EXCEEDS,
                f"CANCEL_EXCEEDS: {amount} won to cancel; receipt {receipt.receipt_no} has "
                f"{left} won left",
                {"REMAIN_AMT": str(left)},
            )
        self.cancels[cancel_no] = Cancel(
            cancel_no,
            receipt.receipt_no,
            epay_no,
            amount,
            cancelled_at.astimezone(KST),
            approval_no,
            channel,
        )
        receipt.cancelled += amount
        if receipt.cancelled == receipt.amount and bill.receipt_no == receipt.receipt_no:
            bill.receipt_no = None  # fully cancelled: the bill is owed again
        return _recorded(cancel_no, epay_no, "NEW", REMAIN_AMT=str(left - amount))

    def _pay(self, bill: Bill, receipt: Receipt) -> None:
        self.receipts[receipt.receipt_no] = receipt
        bill.receipts.append(receipt.receipt_no)
        bill.receipt_no = receipt.receipt_no


def _again(what: str, known: Receipt | Cancel, sent: tuple[str, int, str, str]) -> Decision:
    """A notice whose number was recorded: the same one is acknowledged again."""
    number = known.receipt_no if isinstance(known, Receipt) else known.cancel_no
    if (known.epay_no, known.amount, known.approval_no, known.channel) != sent:
        return Decision(
            Result.RECEIPT_NO_REUSED,
            f"RECEIPT_NO_REUSED: {what} {number} was recorded for bill {known.epay_no}, "
            f"{known.amount} won, approval {known.approval_no!r}",
        )
    known.deliveries += 1
    return _recorded(number, known.epay_no, "DUP")


def _recorded(number: str, epay_no: str, how: str, **extra: str) -> Decision:
    body = {"RCPT_NO": number, "EPAY_NO": epay_no, "PROC_GB": how, **extra}
    return Decision(Result.NORMAL, "NORMAL SERVICE", body)
