"""The sandbox's control API under /_sandbox/: not part of the tax system's format.

Tests, benchmarks and operators add bills (thousands in one call; each is issued: the
feed lists it next), pay a bill through
another channel (the race a receipt notice can lose) and read what was recorded, so a test
can check that each payment was recorded exactly once however often it was notified.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.kinds import TaxKind
from adapters.localtax import demo
from adapters.localtax.records import Bill, Books
from adapters.localtax.wire import KST


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
    payer_ref: str = Field(default="", max_length=100)  # PAYER_REF in the feed


class NewBills(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bills: list[NewBill] = Field(min_length=1, max_length=100_000)


class PaidElsewhere(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: str = Field(default="bank", pattern=r"^[a-z_]{2,20}$")
    paid_at: datetime | None = None  # now when left out


def routes(books: Books, today: Callable[[], date]) -> list[Route]:
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

    return [
        Route("/_sandbox/bills", add_bills, methods=["POST"]),
        Route("/_sandbox/bills/{epay_no}/paid", pay_elsewhere, methods=["POST"]),
        Route("/_sandbox/receipts", recorded),
    ]


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
            payer_ref=new.payer_ref,
        )
    )
    if new.paid_by:
        books.paid_elsewhere(epay_no, new.paid_by, datetime.now(KST))
    return epay_no


def _plain(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in record.items()}
