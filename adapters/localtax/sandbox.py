"""A sandbox of the local tax system in its documented format (docs/upstreams/localtax.md).

The /localtax/v1 paths speak the format an adapter is written against. The /_sandbox/
paths are not part of it: tests, benchmarks and operators use them to add bills, to pay a
bill through another channel (the race a notice can lose) and to read what was recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.kinds import TaxKind
from adapters.localtax import demo, wire
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


class NewBill(BaseModel):
    """A bill to add through POST /_sandbox/bills; what is left out gets a plausible value."""

    model_config = ConfigDict(extra="forbid")

    district_code: str = Field(default="11110", pattern=r"^[0-9]{5}$")
    tax_kind: TaxKind | None = None  # the 세목's kind when left out
    item_code: str = Field(default="41", pattern=r"^[0-9]{2}$")
    item: str | None = Field(default=None, min_length=1)
    payer_id: str = Field(default="P0000001", min_length=1, max_length=20)
    payer_name: str = Field(default="홍길동", min_length=1, max_length=50)
    amount: int = Field(default=40_000, gt=0)
    late_fee: int | None = Field(default=None, ge=0)
    due_date: date | None = None  # 30 days after today when left out
    tax_no: str | None = Field(default=None, min_length=1, max_length=31)
    paid_by: str | None = Field(default=None, pattern=r"^[a-z_]{2,20}$")


class NewBills(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bills: list[NewBill] = Field(min_length=1, max_length=100_000)


class PaidElsewhere(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: str = Field(default="bank", pattern=r"^[a-z_]{2,20}$")
    paid_at: datetime | None = None  # now when left out


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

    async def add_bills(request: Request) -> JSONResponse:
        try:
            wanted = NewBills.model_validate_json(await request.body())
        except ValidationError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        numbers = [_add(books, new, today()) for new in wanted.bills]
        return JSONResponse({"epay_nos": numbers})

    async def pay_elsewhere(request: Request) -> JSONResponse:
        try:
            wanted = PaidElsewhere.model_validate_json(await request.body() or b"{}")
        except ValidationError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        epay_no = request.path_params["epay_no"]
        if epay_no not in books.bills:
            return JSONResponse({"error": f"no bill {epay_no}"}, status_code=404)
        paid_at = wanted.paid_at or datetime.now(KST)
        if paid_at.utcoffset() is None:
            return JSONResponse({"error": "paid_at needs a timezone"}, status_code=400)
        paid = books.paid_elsewhere(epay_no, wanted.channel, paid_at)
        if paid is None:
            return JSONResponse({"error": f"bill {epay_no} is paid already"}, status_code=409)
        return JSONResponse({"receipt_no": paid.receipt_no, "amount": paid.amount})

    async def recorded(request: Request) -> JSONResponse:
        epay_no = request.query_params.get("epay_no")

        def wanted(record: Any) -> bool:
            return epay_no is None or record.epay_no == epay_no

        return JSONResponse(
            {
                "receipts": [_plain(asdict(r)) for r in books.receipts.values() if wanted(r)],
                "cancels": [_plain(asdict(c)) for c in books.cancels.values() if wanted(c)],
            }
        )

    return Starlette(
        routes=[
            Route(wire.INSTITUTION, institution),
            Route(wire.BILL, bill),
            Route(wire.BILL_LIST, bill_list),
            Route(wire.RECEIPT, receipt, methods=["POST"]),
            Route(wire.CANCEL, cancel, methods=["POST"]),
            Route("/_sandbox/bills", add_bills, methods=["POST"]),
            Route("/_sandbox/bills/{epay_no}/paid", pay_elsewhere, methods=["POST"]),
            Route("/_sandbox/receipts", recorded),
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


def _add(books: Books, new: NewBill, today: date) -> str:
    item = demo.ITEMS.get(new.item_code)
    kind = new.tax_kind or (item.kind if item else TaxKind.NON_TAX)
    due = new.due_date or today + timedelta(days=30)
    epay_no = books.new_epay_no(new.district_code, kind, due.year, new.item_code)
    late_fee = new.late_fee
    if late_fee is None:
        late_fee = demo.late_fee(item, new.amount) if item else new.amount * 3 // 100 // 10 * 10
    books.add(
        Bill(
            epay_no=epay_no,
            tax_kind=kind,
            tax_no=new.tax_no
            or demo.tax_no(new.district_code, new.item_code, due, int(epay_no[-6:])),
            district_code=new.district_code,
            payer_id=new.payer_id,
            payer_name=new.payer_name,
            item_code=new.item_code,
            item=new.item or (item.name if item else f"세목 {new.item_code}"),
            amount=new.amount,
            late_fee=late_fee,
            due_date=due,
        )
    )
    if new.paid_by:
        books.paid_elsewhere(epay_no, new.paid_by, datetime.now(KST))
    return epay_no


def _plain(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in record.items()}


SANDBOX = Sandbox(
    name="localtax",
    summary="local tax / non-tax revenue system: bills, 수납 통지 and 취소 통지, JSON",
    app=create_app,
    configure=lambda url: {"base_url": url, "api_key": API_KEY, "institution_code": INSTITUTION},
)
