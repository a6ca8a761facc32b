"""Daily reconciliation of a hand-made day: each kind of discrepancy found and explained,
the matched lines booked in the ledger once however often the day is run."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from adapters.kinds import SettlementRow
from hub.core import db
from hub.core.settings import Settings
from resolvers.payments import ledger, reconciliation
from resolvers.payments.reconciliation import Item, Report
from tests.payments.ledger_helpers import insert_payment, insert_refund, kst

pytestmark = pytest.mark.db

DAY = date(2025, 3, 14)


@pytest.fixture(scope="module")
async def pool(migrated_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(migrated_url, Settings.from_env())
    yield pool
    await pool.close()


def line(
    kind: str, payment_key: str, order_id: str, amount: int, transaction_key: str | None = None
) -> SettlementRow:
    """A settlement line with a 2 % fee (given back, negative, on a cancel)."""
    fee = (abs(amount) * 2 // 100) * (1 if amount > 0 else -1)
    return SettlementRow(
        settlement_date=DAY + timedelta(days=2),
        payment_key=payment_key,
        order_id=order_id,
        transaction_key=transaction_key or f"tk_{uuid.uuid4().hex}",
        kind=kind,
        amount=amount,
        fee=fee,
        payout=amount - fee,
        transacted_at=datetime.now(UTC),
    )


async def settlements(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT reference, payment_id FROM ledger_transactions WHERE kind = 'settlement'"
        " ORDER BY reference"
    )


async def account(pool: asyncpg.Pool, name: str) -> int:
    found = await ledger.balances(pool, name)
    return found[0].balance if found else 0


def by_order(report: Report) -> dict[str, list[Item]]:
    found: dict[str, list[Item]] = {}
    for item in report.items:
        found.setdefault(item.order_id, []).append(item)
    return found


async def test_a_day_with_every_kind_of_discrepancy(pool: asyncpg.Pool) -> None:
    rows: list[SettlementRow] = []  # the gateway's file
    matched: list[SettlementRow] = []  # the lines of it the hub booked that day, as booked
    async with pool.acquire() as conn, conn.transaction():

        async def booked(
            amount: int, at: datetime, status: str = "confirmed"
        ) -> tuple[uuid.UUID, str, str]:
            return await insert_payment(conn, amount, confirmed_at=at, status=status)

        # Matched: a payment, and one just after midnight Korea time (15:10 UTC the day before).
        p1 = await booked(30_000, kst(DAY, 10))
        matched.append(line("PAYMENT", p1[2], p1[1], 30_000))
        p8 = await booked(8_000, kst(DAY, 0, 10))
        matched.append(line("PAYMENT", p8[2], p8[1], 8_000))
        # Matched: a payment and its partial refund the same day.
        p2 = await booked(20_000, kst(DAY, 11), status="partially_refunded")
        _, r2_key = await insert_refund(conn, p2[0], 5_000, done_at=kst(DAY, 15))
        assert r2_key is not None
        matched.append(line("PAYMENT", p2[2], p2[1], 20_000))
        matched.append(line("CANCEL", p2[2], p2[1], -5_000, r2_key))
        # Amount mismatch.
        p3 = await booked(45_000, kst(DAY, 12))
        rows.append(line("PAYMENT", p3[2], p3[1], 40_000))
        # Missing at the gateway.
        p4 = await booked(12_000, kst(DAY, 13, 5))
        # Missing in the hub: the hub lost the answer, or saw a decline, or has no payment;
        # or booked it the day before (23:50 KST); a refund it has as unknown; a line twice.
        p5 = await insert_payment(conn, 15_000, status="unknown")
        rows.append(line("PAYMENT", p5[2], p5[1], 15_000))
        p6 = await insert_payment(conn, 9_000, status="failed")
        await conn.execute(
            "UPDATE payments SET failure_code = 'REJECT_CARD_COMPANY' WHERE payment_id = $1",
            p6[0],
        )
        rows.append(line("PAYMENT", p6[2], p6[1], 9_000))
        rows.append(line("PAYMENT", "pk_nobody", "order-nobody", 7_000))
        p7 = await booked(11_000, kst(DAY - timedelta(days=1), 23, 50))
        rows.append(line("PAYMENT", p7[2], p7[1], 11_000))
        p9 = await booked(6_000, kst(DAY, 16))
        await insert_refund(conn, p9[0], 3_000, status="unknown")
        matched.append(line("PAYMENT", p9[2], p9[1], 6_000))
        rows.append(line("CANCEL", p9[2], p9[1], -3_000))
        rows += [*matched, matched[0]]
        # Booked in the ledger as the payment service does when it confirms.
        for payment_id, amount in ((p1[0], 30_000), (p8[0], 8_000), (p2[0], 20_000)):
            await ledger.payment_confirmed(conn, payment_id, 1, "11110", amount)

    bank, fees = await account(pool, ledger.BANK), await account(pool, ledger.GATEWAY_FEES)
    report = await reconciliation.reconcile(pool, DAY, rows)

    assert (report.matched, report.missing_in_hub, report.missing_at_gateway) == (5, 6, 1)
    assert report.amount_mismatch == 1
    assert report.gateway_amount == sum(row.amount for row in rows)
    assert report.hub_amount == 30_000 + 8_000 + 20_000 - 5_000 + 45_000 + 12_000 + 6_000
    assert report.gateway_fees == sum(row.fee for row in rows)
    items = by_order(report)
    assert set(items) == {p3[1], p4[1], p5[1], p6[1], "order-nobody", p7[1], p9[1], p1[1]}
    [mismatch] = items[p3[1]]
    assert (mismatch.kind, mismatch.hub_amount, mismatch.gateway_amount) == (
        "amount_mismatch", 45_000, 40_000
    )  # fmt: skip
    assert "5,000 won less at the gateway" in mismatch.explanation
    [missing] = items[p4[1]]
    assert (missing.kind, missing.hub_amount, missing.gateway_amount) == (
        "missing_at_gateway", 12_000, None
    )  # fmt: skip
    assert "at 2025-03-14 13:05 KST" in missing.explanation
    assert "lacks it" in missing.explanation
    explained = {order: [i.explanation for i in found] for order, found in items.items()}
    assert "the hub has this payment as unknown" in explained[p5[1]][0]
    assert "as failed (REJECT_CARD_COMPANY)" in explained[p6[1]][0]
    assert "charged all the same" in explained[p6[1]][0]
    assert "no payment for" in explained["order-nobody"][0]
    assert "booked it on 2025-03-13, not 2025-03-14" in explained[p7[1]][0]
    assert (
        "no refund of the hub has this transaction key (it has: 3,000 won unknown)"
        in (explained[p9[1]][0])
    )
    assert "a second time" in explained[p1[1]][0]
    assert {i.kind for order in (p5, p6, p7, p9, p1) for i in items[order[1]]} == {"missing_in_hub"}

    # The matched lines are booked: each once, with its payment.
    booked_now = await settlements(pool)
    assert [r["reference"] for r in booked_now] == sorted(
        f"settlement:{r.transaction_key}" for r in matched
    )
    assert await account(pool, ledger.BANK) - bank == sum(r.payout for r in matched)
    assert await account(pool, ledger.GATEWAY_FEES) - fees == sum(r.fee for r in matched)
    assert await ledger.unbalanced_transactions(pool) == 0

    # Stored as returned; a rerun with the file corrected replaces it and books only what
    # it newly matches.
    assert await reconciliation.stored_report(pool, DAY) == report
    corrected = [
        replace(r, amount=45_000, fee=900, payout=44_100) if r.order_id == p3[1] else r
        for r in rows
    ] + [line("PAYMENT", p4[2], p4[1], 12_000)]
    again = await reconciliation.reconcile(pool, DAY, corrected)
    assert (again.matched, again.amount_mismatch, again.missing_at_gateway) == (7, 0, 0)
    assert again.missing_in_hub == 6
    assert await reconciliation.stored_report(pool, DAY) == again
    stored_items = await pool.fetchval(
        "SELECT count(*) FROM payment_reconciliation_items WHERE day = $1", DAY
    )
    assert stored_items == len(again.items) == 6
    assert len(await settlements(pool)) == len(booked_now) + 2
    once_more = await reconciliation.reconcile(pool, DAY, corrected)
    assert once_more.matched == 7
    assert len(await settlements(pool)) == len(booked_now) + 2
    assert await ledger.unbalanced_transactions(pool) == 0

    exported = list(csv.DictReader(io.StringIO(reconciliation.report_csv(report))))
    assert len(exported) == len(report.items)
    [exported_mismatch] = [r for r in exported if r["kind"] == "amount_mismatch"]
    assert exported_mismatch["difference"] == "-5000"
    assert exported_mismatch["day"] == "2025-03-14"
    assert {r["difference"] for r in exported if r["kind"] != "amount_mismatch"} == {""}


async def test_a_malformed_file_is_refused_and_nothing_is_stored(pool: asyncpg.Pool) -> None:
    day = DAY + timedelta(days=10)
    async with pool.acquire() as conn:
        _, order_id, key = await insert_payment(conn, 10_000, confirmed_at=kst(day, 9))
    good = line("PAYMENT", key, order_id, 10_000)
    for bad in (
        replace(good, payout=good.payout + 1),
        replace(good, amount=-10_000, payout=-10_000 - good.fee),
        replace(good, kind="CHARGEBACK"),
    ):
        with pytest.raises(ValueError, match="settlement line"):
            await reconciliation.reconcile(pool, day, [good, bad])
    assert await reconciliation.stored_report(pool, day) is None


async def test_an_empty_day_is_a_report_of_zeros(pool: asyncpg.Pool) -> None:
    day = DAY + timedelta(days=20)
    report = await reconciliation.reconcile(pool, day, [])
    assert (report.matched, report.gateway_amount, report.hub_amount, report.items) == (0, 0, 0, ())
    assert await reconciliation.stored_report(pool, day) == report
    assert reconciliation.report_csv(report).splitlines() == [",".join(reconciliation.CSV_COLUMNS)]
