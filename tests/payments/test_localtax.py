"""The localtax adapter against its sandbox over real HTTP: bills, notices, faults."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.errors import MalformedResponse, UpstreamRejected, UpstreamTimeout
from adapters.kinds import NoticeAck, NoticeOutcome, ReceiptNotice, TaxBill, TaxBills, TaxKind
from adapters.localtax import adapter, demo
from adapters.localtax.records import Books
from adapters.localtax.sandbox import SANDBOX, create_app
from adapters.localtax.wire import KST
from adapters.sandbox.server import RunningSandbox, running
from tests.adapters.helpers import adapters_check, sandbox_process

WIRE_DOC = Path(__file__).parents[2] / "docs" / "upstreams" / "localtax.md"
TODAY = date(2026, 5, 12)  # the day the documented exchanges were taken on
FIXED = dataclasses.replace(SANDBOX, app=lambda: create_app(lambda: TODAY))
BUDGET = 1.0


@pytest.fixture
async def served() -> AsyncIterator[RunningSandbox]:
    async with running(SANDBOX) as sandbox:
        yield sandbox


async def connect(served: RunningSandbox, **settings: Any) -> TaxBills:
    values = served.settings() | {"timeout_seconds": BUDGET} | settings
    connection = adapter.connect(adapter.read_settings(**values))
    assert isinstance(connection, TaxBills)
    return connection


@pytest.fixture
async def tax(served: RunningSandbox) -> AsyncIterator[TaxBills]:
    connection = await connect(served)
    yield connection
    await connection.aclose()


async def add_bills(served: RunningSandbox, *bills: dict[str, Any]) -> list[str]:
    async with httpx.AsyncClient(base_url=served.url) as http:
        response = await http.post("/_sandbox/bills", json={"bills": list(bills)})
    response.raise_for_status()
    numbers: list[str] = response.json()["epay_nos"]
    return numbers


async def pay_elsewhere(served: RunningSandbox, epay_no: str, channel: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=served.url) as http:
        return await http.post(f"/_sandbox/bills/{epay_no}/paid", json={"channel": channel})


async def recorded(served: RunningSandbox, epay_no: str) -> dict[str, list[dict[str, Any]]]:
    async with httpx.AsyncClient(base_url=served.url) as http:
        response = await http.get("/_sandbox/receipts", params={"epay_no": epay_no})
    response.raise_for_status()
    answer: dict[str, list[dict[str, Any]]] = response.json()
    return answer


def now() -> datetime:
    return datetime.now(UTC)


def kst_today() -> date:
    return datetime.now(KST).date()


def notice(
    receipt_no: str,
    epay_no: str,
    amount: int,
    occurred_at: datetime | None = None,
    approval_no: str = "30012345",
) -> ReceiptNotice:
    return ReceiptNotice(receipt_no, epay_no, amount, occurred_at or now(), approval_no)


ACCEPTED = NoticeAck(NoticeOutcome.ACCEPTED, "recorded")
ACCEPTED_BEFORE = NoticeAck(NoticeOutcome.ACCEPTED, "recorded before")


async def test_the_demo_bills_read_through_the_adapter_are_the_generated_ones() -> None:
    truth = Books()
    demo.populate(truth, TODAY)
    bills = list(truth.bills.values())
    assert len(bills) >= 200
    assert {bill.district_code for bill in bills} == set(demo.DISTRICTS)
    assert any(bill.due_date < TODAY and bill.late_fee > 0 for bill in bills)
    paid = [bill for bill in bills if bill.receipt_no]
    assert 5 <= len(paid) <= len(bills) // 5

    async with running(FIXED) as served:
        tax = await connect(served)
        try:
            for payer in sorted({bill.payer_id for bill in bills}):
                found = await tax.bills_of(payer)
                expected = [
                    TaxBill(
                        epay_no=bill.epay_no,
                        tax_kind=bill.tax_kind,
                        tax_no=bill.tax_no,
                        district_code=bill.district_code,
                        payer_id=bill.payer_id,
                        payer_name=bill.payer_name,
                        item_code=bill.item_code,
                        item=bill.item,
                        amount=bill.amount,
                        late_fee=bill.late_fee,
                        due_date=bill.due_date,
                        paid=bill.receipt_no is not None,
                    )
                    for bill in truth.of_payer(payer)
                ]
                assert found == expected
        finally:
            await tax.aclose()


async def test_a_bill_is_looked_up_by_its_epay_no(served: RunningSandbox, tax: TaxBills) -> None:
    [number] = await add_bills(
        served,
        {
            "district_code": "11680",
            "item_code": "10",
            "payer_id": "P-LOOKUP",
            "payer_name": "김민준",
            "amount": 187_430,
            "late_fee": 5_620,
            "due_date": "2026-09-30",
            "tax_no": "1168000102026090000100000000001",
        },
    )
    assert len(number) == 19 and number.startswith("11680" + "1" + "26" + "10")
    assert await tax.bill(number) == TaxBill(
        epay_no=number,
        tax_kind=TaxKind.LOCAL_TAX,
        tax_no="1168000102026090000100000000001",
        district_code="11680",
        payer_id="P-LOOKUP",
        payer_name="김민준",
        item_code="10",
        item="재산세",
        amount=187_430,
        late_fee=5_620,
        due_date=date(2026, 9, 30),
        paid=False,
    )
    assert await tax.bill("1168012610999999999") is None
    assert await tax.bill("123") is None


async def test_a_payers_bills_come_unpaid_first_across_pages(
    served: RunningSandbox, tax: TaxBills
) -> None:
    today = kst_today()
    soon, later, earliest = (today + timedelta(days=d) for d in (5, 20, -3))
    numbers = await add_bills(
        served,
        *(
            {"payer_id": "P-LIST", "due_date": due.isoformat(), "item_code": code}
            for due, code in ((later, "41"), (earliest, "90"), (soon, "51"))
        ),
    )
    (await pay_elsewhere(served, numbers[1], "bank")).raise_for_status()
    listed = await tax.bills_of("P-LIST")
    assert [bill.epay_no for bill in listed] == [numbers[2], numbers[0], numbers[1]]
    assert [bill.paid for bill in listed] == [False, False, True]
    assert [bill.tax_kind for bill in listed] == [TaxKind.NON_TAX, TaxKind.NON_TAX, TaxKind.WATER]
    assert await tax.bills_of("P-NOBODY") == []

    many = await add_bills(
        served, *({"payer_id": "P-MANY", "amount": 1000 + n} for n in range(230))
    )
    found = await tax.bills_of("P-MANY")
    assert sorted(bill.epay_no for bill in found) == sorted(many)
    assert sorted(bill.amount for bill in found) == [1000 + n for n in range(230)]


async def test_the_feed_lists_bills_as_issued_after_a_place_with_the_payers_pseudonym(
    served: RunningSandbox, tax: TaxBills
) -> None:
    start = (await tax.issued_after(0, 1)).last_seq  # the demo bills come first
    numbers = await add_bills(
        served,
        {"payer_ref": "QwO6-5c_ROcfiUsHzZm2n1MzGsdqTr8n0DZpF5jKvhU"},
        {},
        {"paid_by": "bank"},
    )
    page = await tax.issued_after(start, 2)
    assert [(i.bill.epay_no, i.seq) for i in page.bills] == [
        (numbers[0], start + 1),
        (numbers[1], start + 2),
    ]
    assert [i.payer_ref for i in page.bills] == [
        "QwO6-5c_ROcfiUsHzZm2n1MzGsdqTr8n0DZpF5jKvhU",
        None,
    ]
    (rest,) = (await tax.issued_after(start + 2, 100)).bills
    assert (rest.bill.epay_no, rest.bill.paid) == (numbers[2], True)
    caught_up = await tax.issued_after(start + 3, 100)
    assert (caught_up.bills, caught_up.last_seq) == ([], start + 3)


async def test_the_late_fee_applies_after_the_due_date_in_korean_time(
    served: RunningSandbox, tax: TaxBills
) -> None:
    due = kst_today() - timedelta(days=1)
    base = {"amount": 40_000, "late_fee": 2_000, "due_date": due.isoformat()}
    late, on_time, just_late = await add_bills(served, base, base, base)
    bill = await tax.bill(late)
    assert bill is not None and bill.amount_due(kst_today()) == 42_000

    short = await tax.notify_receipt(notice("R-LATE-1", late, 40_000))
    assert short.outcome == NoticeOutcome.REJECTED
    assert "42000 won due" in short.detail and "가산금 2000" in short.detail
    assert await tax.notify_receipt(notice("R-LATE-2", late, 42_000)) == ACCEPTED

    # 23:30 on the due date in Seoul is 14:30 UTC: still on time, no late fee.
    last_minute = datetime(due.year, due.month, due.day, 23, 30, tzinfo=KST).astimezone(UTC)
    on_time_notice = notice("R-ONTIME", on_time, 40_000, occurred_at=last_minute)
    assert await tax.notify_receipt(on_time_notice) == ACCEPTED
    [receipt] = (await recorded(served, on_time))["receipts"]
    assert receipt["paid_at"] == f"{due.isoformat()}T23:30:00+09:00"

    # 00:30 the day after in Seoul is still the due date in UTC: the late fee applies.
    after = datetime(due.year, due.month, due.day, 15, 30, tzinfo=UTC)
    short = await tax.notify_receipt(notice("R-JUST-1", just_late, 40_000, occurred_at=after))
    assert short.outcome == NoticeOutcome.REJECTED
    assert await tax.notify_receipt(notice("R-JUST-2", just_late, 42_000, after)) == ACCEPTED


async def test_a_receipt_notice_sent_twice_is_accepted_and_recorded_once(
    served: RunningSandbox, tax: TaxBills
) -> None:
    [number] = await add_bills(served, {"amount": 52_000})
    sent = notice("R-TWICE", number, 52_000, approval_no="77001234")
    assert await tax.notify_receipt(sent) == ACCEPTED
    assert await tax.notify_receipt(sent) == ACCEPTED_BEFORE
    [receipt] = (await recorded(served, number))["receipts"]
    assert receipt["receipt_no"] == "R-TWICE" and receipt["deliveries"] == 2
    assert (receipt["amount"], receipt["approval_no"], receipt["channel"]) == (
        52_000,
        "77001234",
        "9990001",
    )
    bill = await tax.bill(number)
    assert bill is not None and bill.paid


async def test_a_bill_paid_at_a_bank_meanwhile_answers_already_paid(
    served: RunningSandbox, tax: TaxBills
) -> None:
    [number] = await add_bills(served, {"amount": 40_000})
    bank = await pay_elsewhere(served, number, "bank")
    assert bank.status_code == 200
    assert (await pay_elsewhere(served, number, "ars")).status_code == 409

    ack = await tax.notify_receipt(notice("R-RACE", number, 40_000))
    assert ack.outcome == NoticeOutcome.ALREADY_PAID
    assert "paid through bank" in ack.detail and bank.json()["receipt_no"] in ack.detail
    receipts = (await recorded(served, number))["receipts"]
    assert [r["channel"] for r in receipts] == ["bank"]


async def test_concurrent_notices_for_one_bill_record_one_receipt(
    served: RunningSandbox, tax: TaxBills
) -> None:
    [number] = await add_bills(served, {"amount": 30_000})
    acks = await asyncio.gather(
        *(tax.notify_receipt(notice(f"R-RACE-{n}", number, 30_000)) for n in range(20))
    )
    outcomes = sorted(ack.outcome for ack in acks)
    assert outcomes == [NoticeOutcome.ACCEPTED] + [NoticeOutcome.ALREADY_PAID] * 19

    [other] = await add_bills(served, {"amount": 30_000})
    same = notice("R-SAME", other, 30_000)
    acks = await asyncio.gather(*(tax.notify_receipt(same) for _ in range(10)))
    assert sorted(ack.detail for ack in acks) == ["recorded"] + ["recorded before"] * 9
    [receipt] = (await recorded(served, other))["receipts"]
    assert receipt["deliveries"] == 10


async def test_wrong_amounts_unknown_bills_and_reused_numbers_are_rejected(
    served: RunningSandbox, tax: TaxBills
) -> None:
    first, second = await add_bills(served, {"amount": 40_000}, {"amount": 40_000})
    wrong = await tax.notify_receipt(notice("R-WRONG", first, 39_990))
    assert wrong.outcome == NoticeOutcome.REJECTED
    assert wrong.detail.startswith("AMOUNT_MISMATCH: 39990 won received; 40000 won due")

    unknown = await tax.notify_receipt(notice("R-UNKNOWN", "1111024199999999999", 40_000))
    assert unknown == NoticeAck(
        NoticeOutcome.REJECTED, "NODATA_ERROR: no bill with EPAY_NO 1111024199999999999"
    )

    assert await tax.notify_receipt(notice("R-REUSED", first, 40_000)) == ACCEPTED
    reused = await tax.notify_receipt(notice("R-REUSED", second, 40_000))
    assert reused.outcome == NoticeOutcome.REJECTED
    assert reused.detail.startswith("RECEIPT_NO_REUSED: receipt R-REUSED was recorded for")
    assert (await recorded(served, second))["receipts"] == []
    bill = await tax.bill(second)
    assert bill is not None and not bill.paid


async def test_cancel_notices_refund_part_then_all_of_a_receipt(
    served: RunningSandbox, tax: TaxBills
) -> None:
    [number] = await add_bills(served, {"amount": 50_000})
    assert await tax.notify_receipt(notice("R-PAY", number, 50_000, approval_no="A1")) == ACCEPTED

    part = notice("C-1", number, 20_000, approval_no="A1")
    assert await tax.notify_cancel(part) == ACCEPTED
    assert await tax.notify_cancel(part) == ACCEPTED_BEFORE
    bill = await tax.bill(number)
    assert bill is not None and bill.paid  # partly cancelled: still paid

    too_much = await tax.notify_cancel(notice("C-2", number, 40_000, approval_no="A1"))
    assert too_much.outcome == NoticeOutcome.REJECTED
    assert "30000 won left" in too_much.detail
    stranger = await tax.notify_cancel(notice("C-3", number, 10_000, approval_no="B9"))
    assert stranger.outcome == NoticeOutcome.REJECTED
    assert stranger.detail.startswith("NO_RECEIPT:")

    assert await tax.notify_cancel(notice("C-4", number, 30_000, approval_no="A1")) == ACCEPTED
    bill = await tax.bill(number)
    assert bill is not None and not bill.paid  # fully cancelled: owed again
    books = await recorded(served, number)
    assert [(c["cancel_no"], c["amount"], c["deliveries"]) for c in books["cancels"]] == [
        ("C-1", 20_000, 2),
        ("C-4", 30_000, 1),
    ]
    assert books["receipts"][0]["cancelled"] == 50_000
    assert await tax.notify_receipt(notice("R-AGAIN", number, 50_000)) == ACCEPTED


async def test_a_bill_paid_elsewhere_cannot_be_cancelled_by_the_hub(
    served: RunningSandbox, tax: TaxBills
) -> None:
    [number] = await add_bills(served, {"amount": 40_000})
    (await pay_elsewhere(served, number, "bank")).raise_for_status()
    ack = await tax.notify_cancel(notice("C-BANK", number, 40_000))
    assert ack.outcome == NoticeOutcome.REJECTED
    assert ack.detail.startswith("NO_RECEIPT: bill")
    bill = await tax.bill(number)
    assert bill is not None and bill.paid


async def test_a_wrong_api_key_or_institution_is_refused_clearly(served: RunningSandbox) -> None:
    wrong_key = await connect(served, api_key="not-the-key")
    try:
        with pytest.raises(UpstreamRejected, match="result code 30 SERVICE_KEY_IS_NOT_REGISTERED"):
            await wrong_key.health()
        with pytest.raises(UpstreamRejected, match="localtax is unavailable: result code 30"):
            await wrong_key.bill("1111024100000000001")
    finally:
        await wrong_key.aclose()
    wrong_institution = await connect(served, institution_code="1234567")
    try:
        with pytest.raises(UpstreamRejected, match="SERVICE_ACCESS_DENIED_ERROR"):
            await wrong_institution.notify_receipt(notice("R-X", "1111024100000000001", 1))
    finally:
        await wrong_institution.aclose()


async def test_a_503_burst_is_retried_and_the_notice_recorded_once(
    served: RunningSandbox, tax: TaxBills
) -> None:
    [number] = await add_bills(served, {"amount": 40_000})
    before = served.injector.served
    await served.inject(error="5xx", status=503, count=2, path="/localtax/")
    assert await tax.notify_receipt(notice("R-503", number, 40_000)) == ACCEPTED
    assert served.injector.served - before == 3
    [receipt] = (await recorded(served, number))["receipts"]
    assert receipt["deliveries"] == 1


async def test_a_lost_answer_is_resent_and_recorded_once(
    served: RunningSandbox, tax: TaxBills
) -> None:
    """The tax system records the notice but its answer is cut: resending is safe."""
    [number] = await add_bills(served, {"amount": 40_000})
    await served.inject(error="malformed", count=1, path="/localtax/")
    with pytest.raises(MalformedResponse, match="localtax"):
        await tax.notify_receipt(notice("R-LOST", number, 40_000))
    assert await tax.notify_receipt(notice("R-LOST", number, 40_000)) == ACCEPTED_BEFORE
    [receipt] = (await recorded(served, number))["receipts"]
    assert receipt["deliveries"] == 2


async def test_a_hanging_tax_system_times_out_within_the_budget(
    served: RunningSandbox, tax: TaxBills
) -> None:
    [number] = await add_bills(served, {"amount": 40_000})
    await served.inject(error="hang", path="/localtax/")
    for call in (tax.bill(number), tax.notify_receipt(notice("R-HANG", number, 40_000))):
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout, match="no answer within the 1 s budget"):
            await call
        assert time.monotonic() - started < BUDGET + 0.3
    await served.clear()
    assert (await recorded(served, number))["receipts"] == []


async def test_the_control_api_refuses_what_it_cannot_add(served: RunningSandbox) -> None:
    async with httpx.AsyncClient(base_url=served.url) as http:
        bad = await http.post("/_sandbox/bills", json={"bills": [{"district_code": "1111"}]})
        unknown = await http.post("/_sandbox/bills/1111024199999999999/paid", json={})
    assert bad.status_code == 400 and "district_code" in bad.text
    assert unknown.status_code == 404


def test_ieum_sandbox_localtax_serves_what_the_adapter_checks() -> None:
    with sandbox_process("localtax", lines=4) as (url, settings):
        assert settings == {
            "IEUM_LOCALTAX_BASE_URL": url,
            "IEUM_LOCALTAX_API_KEY": "sandbox-localtax-key",
            "IEUM_LOCALTAX_INSTITUTION_CODE": "9990001",
        }
        healthy = adapters_check("localtax", settings)
        assert healthy.returncode == 0, healthy.stderr
        assert healthy.stdout.strip() == "localtax: healthy"
        refused = adapters_check(
            "localtax", settings | {"IEUM_LOCALTAX_INSTITUTION_CODE": "1234567"}
        )
        assert refused.returncode == 1
        assert "SERVICE_ACCESS_DENIED_ERROR" in refused.stderr


EXCHANGE = re.compile(r"```http\n(?P<request>.*?)```\s*```json\n(?P<answer>.*?)```", re.DOTALL)


async def test_the_documented_exchanges_are_what_the_sandbox_answers() -> None:
    """docs/upstreams/localtax.md, replayed in order against a sandbox of that day."""
    exchanges = list(EXCHANGE.finditer(WIRE_DOC.read_text()))
    assert len(exchanges) >= 10
    async with running(FIXED) as served, httpx.AsyncClient(base_url=served.url) as http:
        for exchange in exchanges:
            head, _, body = exchange["request"].partition("\n\n")
            request_line, *header_lines = head.strip().splitlines()
            method, path = request_line.split(" ")
            headers = dict(line.split(": ", 1) for line in header_lines)
            content = json.loads(body) if body.strip() else None
            response = await http.request(method, path, headers=headers, json=content)
            assert response.json() == json.loads(exchange["answer"]), request_line
