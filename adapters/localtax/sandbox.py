"""A sandbox of the local tax system in its documented format (docs/upstreams/localtax.md).

Every bill it holds was issued into its feed (getBillFeed), the demo bills first: a
restarted sandbox is a new tax system whose feed starts again at 1.

The /localtax/v1 paths speak the format an adapter is written against; the /_sandbox/
paths (control.py) are not part of it. The books (records.py) live in memory, one set per
app, with the demo bills of the day it starts (demo.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.localtax import control, demo, wire
from adapters.localtax.records import Bill, Books, Decision
from adapters.localtax.wire import KST, MESSAGES, Result
from adapters.sandbox.server import Sandbox

API_KEY = "sandbox-localtax-key"
INSTITUTION = "9990001"
INSTITUTION_NAME = "이음 수납대행 (sandbox)"


def kst_today() -> date:
    return datetime.now(KST).date()


def envelope(code: Result, body: dict[str, Any] | None = None, message: str = "") -> JSONResponse:
    header = {"resultCode": code.value, "resultMsg": message or MESSAGES[code]}
    return JSONResponse({"header": header, "body": body or {}})


def render(bill: Bill, books: Books) -> dict[str, str]:
    receipt = books.receipts.get(bill.receipt_no) if bill.receipt_no else None
    return {
        "EPAY_NO": bill.epay_no,
        "TAX_GB": str(int(bill.tax_kind)),
        "TAX_NO": bill.tax_no,
        "SGG_CD": bill.district_code,
        "PAYER_ID": bill.payer_id,
        "PAYER_NM": bill.payer_name,
        "TAX_ITEM_CD": bill.item_code,
        "TAX_ITEM_NM": bill.item,
        "TAX_AMT": str(bill.amount),
        "ADD_AMT": str(bill.late_fee),
        "DUE_DT": bill.due_date.strftime(wire.DAY),
        "PAY_YN": "Y" if receipt else "N",
        "PAID_DT": receipt.paid_at.strftime(wire.TIME) if receipt else "",
    }


def create_app(today: Callable[[], date] = kst_today) -> Starlette:
    books = Books()
    demo.populate(books, today())

    def refused(request: Request) -> JSONResponse | None:
        if request.headers.get(wire.API_KEY_HEADER) != API_KEY:
            return envelope(Result.KEY_NOT_REGISTERED)
        if request.headers.get(wire.INSTITUTION_HEADER) != INSTITUTION:
            message = f"{MESSAGES[Result.ACCESS_DENIED]}: the key is {INSTITUTION}'s"
            return envelope(Result.ACCESS_DENIED, message=message)
        return None

    async def institution(request: Request) -> JSONResponse:
        if answer := refused(request):
            return answer
        item = {
            "INST_CD": INSTITUTION,
            "INST_NM": INSTITUTION_NAME,
            "SGG_CDS": sorted(demo.DISTRICTS),
        }
        return envelope(Result.NORMAL, {"item": item})

    async def bill(request: Request) -> JSONResponse:
        if answer := refused(request):
            return answer
        epay_no = request.query_params.get("EPAY_NO", "")
        if not epay_no:
            return _missing("EPAY_NO")
        if len(epay_no) != wire.EPAY_NO_LENGTH:
            return _invalid(f"EPAY_NO has {len(epay_no)} characters, not 19")
        found = books.bills.get(epay_no)
        if found is None:
            return envelope(Result.NO_DATA)
        return envelope(Result.NORMAL, {"item": render(found, books)})

    async def bill_list(request: Request) -> JSONResponse:
        if answer := refused(request):
            return answer
        payer_id = request.query_params.get("PAYER_ID", "")
        if not payer_id:
            return _missing("PAYER_ID")
        try:
            page = int(request.query_params.get("pageNo", "1"))
            rows = int(request.query_params.get("numOfRows", "10"))
        except ValueError:
            return _invalid("pageNo and numOfRows are whole numbers")
        if page < 1 or not 1 <= rows <= wire.MAX_ROWS:
            return _invalid(f"pageNo from 1, numOfRows from 1 to {wire.MAX_ROWS}")
        found = books.of_payer(payer_id)
        items = [render(b, books) for b in found[(page - 1) * rows : page * rows]]
        body = {"items": items, "totalCount": len(found), "pageNo": page, "numOfRows": rows}
        return envelope(Result.NORMAL, body)

    async def bill_feed(request: Request) -> JSONResponse:
        if answer := refused(request):
            return answer
        after = request.query_params.get("AFTER", "0")
        rows = request.query_params.get("numOfRows", "10")
        if not (after.isascii() and after.isdigit() and rows.isascii() and rows.isdigit()):
            return _invalid("AFTER and numOfRows are whole numbers")
        if not 1 <= int(rows) <= wire.MAX_ROWS:
            return _invalid(f"numOfRows from 1 to {wire.MAX_ROWS}")
        items = [
            {**render(b, books), "FEED_SEQ": str(b.feed_seq), "PAYER_REF": b.payer_ref}
            for b in books.issued_after(int(after), int(rows))
        ]
        body = {"items": items, "numOfRows": int(rows), "lastSeq": str(len(books.feed))}
        return envelope(Result.NORMAL, body)

    async def receipt(request: Request) -> JSONResponse:
        if answer := refused(request):
            return answer
        fields = ("RCPT_NO", "EPAY_NO", "RCPT_AMT", "RCPT_DT", "APPR_NO")
        notice = await _notice(request, fields)
        if isinstance(notice, JSONResponse):
            return notice
        number, epay_no, amount, moment, approval = notice
        return _decided(books.receive(number, epay_no, amount, moment, approval, INSTITUTION))

    async def cancel(request: Request) -> JSONResponse:
        if answer := refused(request):
            return answer
        fields = ("CNCL_RCPT_NO", "EPAY_NO", "CNCL_AMT", "CNCL_DT", "APPR_NO")
        notice = await _notice(request, fields)
        if isinstance(notice, JSONResponse):
            return notice
        number, epay_no, amount, moment, approval = notice
        return _decided(books.cancel(number, epay_no, amount, moment, approval, INSTITUTION))

    return Starlette(
        routes=[
            Route(wire.INSTITUTION, institution),
            Route(wire.BILL, bill),
            Route(wire.BILL_LIST, bill_list),
            Route(wire.BILL_FEED, bill_feed),
            Route(wire.RECEIPT, receipt, methods=["POST"]),
            Route(wire.CANCEL, cancel, methods=["POST"]),
            *control.routes(books, today),
        ]
    )


Notice = tuple[str, str, int, datetime, str]


async def _notice(request: Request, fields: tuple[str, ...]) -> Notice | JSONResponse:
    """The five fields of a receipt or cancel notice, checked, or the error answer."""
    try:
        body = await request.json()
    except ValueError:
        return _invalid("the body is not JSON")
    if not isinstance(body, dict):
        return _invalid("the body is not a JSON object")
    number_field, epay_field, amount_field, time_field, approval_field = fields
    for name in fields:
        if not body.get(name):
            return _missing(name)
    values = {name: body[name] for name in fields}
    if not all(isinstance(value, str) for value in values.values()):
        return _invalid("every field is a string")
    amount = values[amount_field]
    if not (amount.isascii() and amount.isdigit() and int(amount) > 0):
        return _invalid(f"{amount_field} {amount!r} is not a positive number of won")
    try:
        moment = wire.parse_kst_time(values[time_field])
    except ValueError:
        return _invalid(f"{time_field} {values[time_field]!r} is not YYYYMMDDHHMMSS")
    if len(values[number_field]) > 40:
        return _invalid(f"{number_field} is longer than 40 characters")
    return values[number_field], values[epay_field], int(amount), moment, values[approval_field]


def _decided(decision: Decision) -> JSONResponse:
    return envelope(decision.code, decision.body, decision.message)


def _missing(name: str) -> JSONResponse:
    message = f"{MESSAGES[Result.MISSING_PARAMETER]}: {name}"
    return envelope(Result.MISSING_PARAMETER, message=message)


def _invalid(reason: str) -> JSONResponse:
    message = f"{MESSAGES[Result.INVALID_PARAMETER]}: {reason}"
    return envelope(Result.INVALID_PARAMETER, message=message)


SANDBOX = Sandbox(
    name="localtax",
    summary="local tax / non-tax revenue system: bills, 수납 통지 and 취소 통지, JSON",
    app=create_app,
    configure=lambda url: {"base_url": url, "api_key": API_KEY, "institution_code": INSTITUTION},
)
