"""The ledger: balanced and append-only by the database itself, postings booked once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from hub.core import db
from hub.core.settings import Settings
from resolvers.payments import ledger
from resolvers.payments.ledger import Line
from tests.payments.ledger_helpers import insert_payment

pytestmark = pytest.mark.db


@pytest.fixture(scope="module")
async def pool(migrated_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(migrated_url, Settings.from_env())
    yield pool
    await pool.close()


async def _raw_transaction(conn: asyncpg.Connection, reference: str) -> int:
    transaction_id: int = await conn.fetchval(
        "INSERT INTO ledger_transactions (kind, reference) VALUES ('test', $1)"
        " RETURNING transaction_id",
        reference,
    )
    return transaction_id


async def _raw_entry(conn: asyncpg.Connection, tx: int, account: str, dr: int, cr: int) -> None:
    await conn.execute(
        "INSERT INTO ledger_entries (transaction_id, account, debit, credit)"
        " VALUES ($1, $2, $3, $4)",
        tx,
        account,
        dr,
        cr,
    )


async def _references(pool: asyncpg.Pool, reference: str) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM ledger_transactions WHERE reference = $1", reference
    )
    return count


@pytest.mark.parametrize(
    "entries",
    [
        [("gateway_receivable", 100, 0), ("revenue:1:11110", 0, 90)],  # debits ≠ credits
        [("gateway_receivable", 100, 0)],  # one entry
        [],  # no entries at all
    ],
)
async def test_the_database_refuses_an_unbalanced_transaction_written_with_raw_sql(
    pool: asyncpg.Pool, entries: list[tuple[str, int, int]]
) -> None:
    reference = f"raw:{uuid.uuid4()}"
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError, match="does not balance"):
            async with conn.transaction():
                tx = await _raw_transaction(conn, reference)
                for account, dr, cr in entries:
                    await _raw_entry(conn, tx, account, dr, cr)
    assert await _references(pool, reference) == 0
    assert await ledger.unbalanced_transactions(pool) == 0


async def test_balanced_entries_may_be_written_one_by_one(pool: asyncpg.Pool) -> None:
    """The check runs at commit, so a transaction is unbalanced in between."""
    reference = f"raw:{uuid.uuid4()}"
    async with pool.acquire() as conn, conn.transaction():
        tx = await _raw_transaction(conn, reference)
        await _raw_entry(conn, tx, "gateway_receivable", 100, 0)
        await _raw_entry(conn, tx, "revenue:1:11110", 0, 60)
        await _raw_entry(conn, tx, "revenue:2:11110", 0, 40)
    assert await _references(pool, reference) == 1
    assert await ledger.unbalanced_transactions(pool) == 0


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_entries SET debit = debit + 1 WHERE debit > 0",
        "DELETE FROM ledger_entries",
        "TRUNCATE ledger_entries CASCADE",
        "UPDATE ledger_transactions SET memo = 'changed'",
        "DELETE FROM ledger_transactions",
        "TRUNCATE ledger_transactions CASCADE",
    ],
)
async def test_the_ledger_is_append_only(pool: asyncpg.Pool, statement: str) -> None:
    async with pool.acquire() as conn:
        await ledger.post(
            conn,
            kind="test",
            reference=f"append-only:{uuid.uuid4()}",
            lines=[Line("bank:settlement", debit=5), Line("gateway_receivable", credit=5)],
        )
    before = await ledger.totals(pool)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await pool.execute(statement)
    assert await ledger.totals(pool) == before


async def test_a_posting_is_booked_once_by_its_reference(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        payment_id, _, _ = await insert_payment(conn, 30_000)
        first = await ledger.payment_confirmed(conn, payment_id, 1, "11140", 30_000)
        again = await ledger.payment_confirmed(conn, payment_id, 1, "11140", 30_000)
    assert isinstance(first, int)
    assert again is None
    entries = await pool.fetch(
        "SELECT account, debit, credit FROM ledger_entries WHERE transaction_id = $1"
        " ORDER BY entry_id",
        first,
    )
    assert [tuple(e) for e in entries] == [
        ("gateway_receivable", 30_000, 0),
        ("revenue:1:11140", 0, 30_000),
    ]
    assert await ledger.balances(pool, "revenue:1:11140") == [
        ledger.Balance("revenue:1:11140", 0, 30_000, 30_000)
    ]


async def test_concurrent_postings_of_one_reference_book_it_once(pool: asyncpg.Pool) -> None:
    reference = f"concurrent:{uuid.uuid4()}"
    lines = [Line("bank:settlement", debit=7), Line("gateway_receivable", credit=7)]
    gate = asyncio.Event()

    async def poster() -> int | None:
        async with pool.acquire() as conn, conn.transaction():
            await gate.wait()
            booked = await ledger.post(conn, kind="test", reference=reference, lines=lines)
            await asyncio.sleep(0.05)  # hold the row so the other one waits on it
            return booked

    tasks = [asyncio.create_task(poster()) for _ in range(4)]
    await asyncio.sleep(0.05)
    gate.set()
    results = await asyncio.gather(*tasks)
    assert sum(result is not None for result in results) == 1
    assert await _references(pool, reference) == 1


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([Line("bank:settlement", debit=10), Line("fees:gateway", credit=9)], "does not balance"),
        ([], "does not balance"),
    ],
)
async def test_post_refuses_an_unbalanced_posting_before_the_database(
    pool: asyncpg.Pool, lines: list[Line], message: str
) -> None:
    reference = f"refused:{uuid.uuid4()}"
    async with pool.acquire() as conn:
        with pytest.raises(ValueError, match=message):
            await ledger.post(conn, kind="test", reference=reference, lines=lines)
    assert await _references(pool, reference) == 0


@pytest.mark.parametrize(
    ("account", "debit", "credit", "message"),
    [
        ("bank:settlement", 5, 5, "not debit 5 and credit 5"),
        ("bank:settlement", 0, 0, "positive debit or a positive credit"),
        ("bank:settlement", -5, 0, "positive debit or a positive credit"),
        ("cash:drawer", 5, 0, "not in the chart of accounts"),
    ],
)
def test_a_line_is_one_positive_amount_on_an_account_of_the_chart(
    account: str, debit: int, credit: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Line(account, debit=debit, credit=credit)


async def test_balances_follow_each_accounts_normal_side(pool: asyncpg.Pool) -> None:
    """A payment, a partial refund, and the gateway settling both: revenue (credit side)
    and the bank (debit side) are positive, what was cleared is back to where it was."""
    before = {b.account: b for b in await ledger.balances(pool)}
    async with pool.acquire() as conn, conn.transaction():
        payment_id, _, _ = await insert_payment(conn, 50_000, district="11170")
        await ledger.payment_confirmed(conn, payment_id, 3, "11170", 50_000)
        await ledger.refund_done(conn, uuid.uuid4(), payment_id, 3, "11170", 20_000)
        await ledger.post_many(
            conn,
            [
                ledger.settlement(f"pay-{payment_id}", 50_000, 1_000, 49_000, payment_id),
                ledger.settlement(f"cancel-{payment_id}", -20_000, -400, -19_600, payment_id),
            ],
        )
    after = {b.account: b for b in await ledger.balances(pool)}

    def change(account: str) -> int:
        old = before.get(account)
        return after[account].balance - (old.balance if old else 0)

    assert after["revenue:3:11170"] == ledger.Balance("revenue:3:11170", 20_000, 50_000, 30_000)
    assert change("gateway_receivable") == 0
    assert change("refunds_payable") == 0
    assert change("bank:settlement") == 49_000 - 19_600
    assert change("fees:gateway") == 1_000 - 400
    assert [b.account for b in await ledger.balances(pool, "revenue:3")] == ["revenue:3:11170"]
    assert await ledger.balances(pool, "revenue:3:1117") == []
    totals = await ledger.totals(pool)
    assert totals.debit == totals.credit > 0
    assert await ledger.unbalanced_transactions(pool) == 0


@pytest.mark.parametrize(
    ("amount", "fee", "payout", "lines"),
    [
        (10_000, 300, 9_700, {("bank:settlement", 9_700, 0), ("fees:gateway", 300, 0),
                              ("gateway_receivable", 0, 10_000)}),
        (10_000, 0, 10_000, {("bank:settlement", 10_000, 0), ("gateway_receivable", 0, 10_000)}),
        (-10_000, -300, -9_700, {("refunds_payable", 10_000, 0), ("bank:settlement", 0, 9_700),
                                 ("fees:gateway", 0, 300)}),
        (-10_000, 100, -10_100, {("refunds_payable", 10_000, 0), ("fees:gateway", 100, 0),
                                 ("bank:settlement", 0, 10_100)}),
    ],
)  # fmt: skip
def test_a_settlement_line_books_payout_fee_and_what_it_clears(
    amount: int, fee: int, payout: int, lines: set[tuple[str, int, int]]
) -> None:
    posting = ledger.settlement("tk_1", amount, fee, payout, None)
    assert posting.reference == "settlement:tk_1"
    assert {(line.account, line.debit, line.credit) for line in posting.lines} == lines


def test_a_settlement_line_whose_payout_is_not_amount_less_fee_is_refused() -> None:
    with pytest.raises(ValueError, match="amount 10000, fee 300, payout 9000"):
        ledger.settlement("tk_2", 10_000, 300, 9_000, None)
