"""The tax system's answers into typed values, and its result codes into errors or outcomes.

Transport failures are already UpstreamErrors (adapters.resilience). Here a result code
becomes one of: the answer (00), nothing found (03 on a lookup), a notice outcome
(41-46, 03 on a notice), or an UpstreamError: the key or the request is wrong (rejected,
not retried), a quota (rate limited) or the service's own failure (retried when safe).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import httpx

from adapters.errors import (
    MalformedResponse,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
)
from adapters.kinds import (
    BillFeedPage,
    IssuedBill,
    NoticeAck,
    NoticeOutcome,
    TaxBill,
    TaxKind,
)
from adapters.localtax.wire import DAY, UPSTREAM, Result

_FAILURES: dict[str, type[UpstreamError]] = {
    Result.APPLICATION_ERROR: UpstreamServerError,
    Result.DB_ERROR: UpstreamServerError,
    Result.SERVICE_TIMEOUT: UpstreamServerError,
    Result.UNKNOWN_ERROR: UpstreamServerError,
    Result.QUOTA_EXCEEDED: UpstreamRateLimited,
}
# A notice the tax system refused for a reason of the bill or the notice, not of the call.
_REFUSALS = frozenset(
    {
        Result.NO_DATA,
        Result.AMOUNT_MISMATCH,
        Result.RECEIPT_NO_REUSED,
        Result.NO_RECEIPT,
        Result.CANCEL_EXCEEDS,
    }
)


@dataclass(frozen=True, slots=True)
class Answer:
    code: str
    message: str
    body: dict[str, Any]


def answer(response: httpx.Response) -> Answer:
    """The envelope of any answer; the call's own failures raised."""
    envelope = response.json()
    header = envelope["header"]
    code, message = str(header["resultCode"]), str(header.get("resultMsg", ""))
    body = envelope.get("body") or {}
    if not isinstance(body, dict):
        raise MalformedResponse(UPSTREAM, f"body is a {type(body).__name__}, not an object")
    if code in _FAILURES:
        raise _FAILURES[code](UPSTREAM, f"result code {code} {message}")
    if code not in {*_REFUSALS, Result.NORMAL, Result.ALREADY_PAID}:
        raise UpstreamRejected(UPSTREAM, f"result code {code} {message}")
    return Answer(code, message, body)


def institution(response: httpx.Response) -> str:
    """getInstInfo: the institution code the key belongs to."""
    found = answer(response)
    _expect_normal(found)
    return str(found.body["item"]["INST_CD"])


def bill(response: httpx.Response) -> TaxBill | None:
    found = answer(response)
    if found.code == Result.NO_DATA:
        return None
    _expect_normal(found)
    return tax_bill(found.body["item"])


@dataclass(frozen=True, slots=True)
class Page:
    bills: list[TaxBill]
    total: int


def bill_page(response: httpx.Response) -> Page:
    found = answer(response)
    if found.code == Result.NO_DATA:
        return Page([], 0)
    _expect_normal(found)
    items = found.body["items"]
    if not isinstance(items, list):
        raise MalformedResponse(UPSTREAM, f"items is a {type(items).__name__}, not a list")
    return Page([tax_bill(item) for item in items], int(found.body["totalCount"]))


def bill_feed(response: httpx.Response) -> BillFeedPage:
    """getBillFeed: the bills issued after a place, each with its FEED_SEQ and PAYER_REF."""
    found = answer(response)
    _expect_normal(found)
    items = found.body.get("items") or []
    if not isinstance(items, list):
        raise MalformedResponse(UPSTREAM, f"items is a {type(items).__name__}, not a list")
    bills = [
        IssuedBill(tax_bill(item), _seq(item.get("FEED_SEQ")), item.get("PAYER_REF") or None)
        for item in items
    ]
    if any(later.seq <= earlier.seq for earlier, later in itertools.pairwise(bills)):
        raise MalformedResponse(UPSTREAM, "the feed's FEED_SEQ do not increase")
    return BillFeedPage(bills, _seq(found.body.get("lastSeq")))


def _seq(raw: object) -> int:
    if isinstance(raw, str) and raw.isascii() and raw.isdigit():
        return int(raw)
    raise MalformedResponse(UPSTREAM, f"feed place {raw!r} is not a string of digits")


def notice_ack(response: httpx.Response) -> NoticeAck:
    """rcptNotice / rcptCnclNotice: 00 recorded (now or before), 41 paid elsewhere, else why not."""
    found = answer(response)
    if found.code == Result.NORMAL:
        before = found.body["PROC_GB"] == "DUP"
        return NoticeAck(NoticeOutcome.ACCEPTED, "recorded before" if before else "recorded")
    if found.code == Result.ALREADY_PAID:
        return NoticeAck(NoticeOutcome.ALREADY_PAID, found.message)
    return NoticeAck(NoticeOutcome.REJECTED, found.message)


def tax_bill(item: dict[str, Any]) -> TaxBill:
    return TaxBill(
        epay_no=_text(item, "EPAY_NO"),
        tax_kind=TaxKind(int(item["TAX_GB"])),
        tax_no=_text(item, "TAX_NO"),
        district_code=_text(item, "SGG_CD"),
        payer_id=_text(item, "PAYER_ID"),
        payer_name=_text(item, "PAYER_NM"),
        item_code=_text(item, "TAX_ITEM_CD"),
        item=_text(item, "TAX_ITEM_NM"),
        amount=won(item["TAX_AMT"]),
        late_fee=won(item["ADD_AMT"]),
        due_date=day(item["DUE_DT"]),
        paid=_yes(item["PAY_YN"]),
    )


def won(raw: object) -> int:
    """An amount: a string of digits (some systems write a number), integer won."""
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return raw
    if isinstance(raw, str) and raw.isascii() and raw.isdigit():
        return int(raw)
    raise MalformedResponse(UPSTREAM, f"amount {raw!r} is not a whole number of won")


def day(raw: object) -> date:
    if not isinstance(raw, str):
        raise MalformedResponse(UPSTREAM, f"date {raw!r} is not YYYYMMDD")
    return datetime.strptime(raw, DAY).date()


def _text(item: dict[str, Any], field: str) -> str:
    value = item[field]
    if not isinstance(value, str) or not value:
        raise MalformedResponse(UPSTREAM, f"{field} is {value!r}, not a text")
    return value


def _yes(raw: object) -> bool:
    if raw not in ("Y", "N"):
        raise MalformedResponse(UPSTREAM, f"PAY_YN is {raw!r}, not Y or N")
    return raw == "Y"


def _expect_normal(found: Answer) -> None:
    if found.code != Result.NORMAL:
        raise UpstreamRejected(UPSTREAM, f"result code {found.code} {found.message}")
