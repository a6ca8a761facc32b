"""The sandbox's demo bills: a few hundred, generated from a fixed seed around `today`.

Payers live in one of a few real districts and owe one to four bills each: local taxes,
fines and fees, water bills. Due dates fall from two months before `today` to six weeks
after, so about half are past due and owe their late fee; one in twelve is already paid at
a bank or by phone. The same `today` gives the same bills.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from adapters.kinds import TaxKind
from adapters.localtax.records import Bill, Books
from adapters.localtax.wire import KST

SEED = 20260101
PAYERS = 120

DISTRICTS = {
    "11110": "서울특별시 종로구",
    "11140": "서울특별시 중구",
    "11440": "서울특별시 마포구",
    "11680": "서울특별시 강남구",
    "26110": "부산광역시 중구",
}


@dataclass(frozen=True)
class Item:
    kind: TaxKind
    code: str
    name: str
    amounts: tuple[int, int, int]  # 본세 from, to and in steps of, won
    late_rate: float  # 가산금 as a share of 본세


# The sandbox's 세목 table (illustrative codes; 41/51/61 follow the parking-fine numbers).
ITEMS = {
    "10": Item(TaxKind.LOCAL_TAX, "10", "재산세", (30_000, 900_000, 10), 0.03),
    "11": Item(TaxKind.LOCAL_TAX, "11", "자동차세", (60_000, 520_000, 10), 0.03),
    "12": Item(TaxKind.LOCAL_TAX, "12", "주민세(개인분)", (10_000, 10_000, 1), 0.03),
    "41": Item(TaxKind.NON_TAX, "41", "주정차위반 과태료", (40_000, 40_000, 1), 0.05),
    "51": Item(TaxKind.NON_TAX, "51", "버스전용차로위반 과태료", (50_000, 60_000, 10_000), 0.05),
    "61": Item(TaxKind.NON_TAX, "61", "주정차위반 과태료(CCTV)", (40_000, 50_000, 10_000), 0.05),
    "71": Item(TaxKind.NON_TAX, "71", "도로점용료", (20_000, 300_000, 10), 0.03),
    "90": Item(TaxKind.WATER, "90", "상하수도요금", (8_000, 120_000, 10), 0.05),
}
_SURNAMES = "김이박최정강조윤장임한오서신권황안송류홍"
_GIVEN = ("민준", "서연", "도윤", "지우", "하준", "서윤", "은우", "지민", "시우", "수아")


def late_fee(item: Item, amount: int) -> int:
    """가산금, rounded down to 10 won as bills print it."""
    return int(amount * item.late_rate) // 10 * 10


def tax_no(district: str, item_code: str, due: date, serial: int) -> str:
    """납세번호: 기관코드 (7) + 검 (1) + 회계 (1) + 과세년월 (6) + 세목 (6) + 과세번호 (6)."""
    return f"{district}00" + "1" + "0" + f"{due:%Y%m}" + f"{item_code:0>6}" + f"{serial:06d}"


def populate(books: Books, today: date) -> None:
    """Add the demo bills, and pay some of them through a bank or by phone."""
    rng = random.Random(SEED)  # noqa: S311 (seeded demo data, not a secret)
    for bill, paid_by in _bills(books, rng, today):
        books.add(bill)
        if paid_by:
            paid_on = min(today, bill.due_date) - timedelta(days=rng.randint(0, 5))
            paid_at = datetime.combine(paid_on, time(10, rng.randint(0, 59)), KST)
            books.paid_elsewhere(bill.epay_no, paid_by, paid_at)


def _bills(books: Books, rng: random.Random, today: date) -> Iterator[tuple[Bill, str]]:
    districts = sorted(DISTRICTS)
    for payer in range(1, PAYERS + 1):
        district = districts[payer % len(districts)]
        payer_id = f"{district}{payer:08d}"
        name = rng.choice(_SURNAMES) + rng.choice(_GIVEN)
        for _ in range(rng.randint(1, 4)):
            item = ITEMS[rng.choice(sorted(ITEMS))]
            low, high, step = item.amounts
            amount = rng.randrange(low, high + 1, step)
            due = today + timedelta(days=rng.randint(-60, 45))
            epay_no = books.new_epay_no(district, item.kind, due.year, item.code)
            bill = Bill(
                epay_no=epay_no,
                tax_kind=item.kind,
                tax_no=tax_no(district, item.code, due, int(epay_no[-6:])),
                district_code=district,
                payer_id=payer_id,
                payer_name=name,
                item_code=item.code,
                item=item.name,
                amount=amount,
                late_fee=late_fee(item, amount),
                due_date=due,
            )
            paid_by = rng.choice(("bank", "ars")) if rng.random() < 1 / 12 else ""
            yield bill, paid_by
