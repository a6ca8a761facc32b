"""The double-entry ledger: the chart of accounts, postings, and the balances they make.

Every won the hub collects, refunds or is paid out is booked as one transaction of two or
more entries whose debits equal their credits. The database checks that at commit (a
deferred constraint trigger) and refuses updates and deletes, whatever code writes; this
module only refuses an obviously wrong posting early, with a clearer message. A posting
names what it books in `reference` (`payment:<id>`, `refund:<id>`, `settlement:<key>`)
and is booked once: posting the same reference again books nothing.

Accounts and their normal side (a balance is positive on that side):

| account                         | kind      | normal | holds                             |
| ------------------------------- | --------- | ------ | --------------------------------- |
| `gateway_receivable`            | asset     | debit  | card money the gateway owes us    |
| `bank:settlement`               | asset     | debit  | payouts the gateway has made      |
| `fees:gateway`                  | expense   | debit  | the gateway's fees                |
| `revenue:<tax kind>:<district>` | revenue   | credit | taxes and fees collected          |
| `refunds_payable`               | liability | credit | refunds owed until settled        |
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple
from uuid import UUID

import asyncpg

GATEWAY_RECEIVABLE = "gateway_receivable"
BANK = "bank:settlement"
GATEWAY_FEES = "fees:gateway"
REFUNDS_PAYABLE = "refunds_payable"


class Side(StrEnum):
    DEBIT = "debit"
    CREDIT = "credit"


# The chart by the account's first segment.
_NORMAL_SIDE = {
    "gateway_receivable": Side.DEBIT,
    "bank": Side.DEBIT,
    "fees": Side.DEBIT,
    "revenue": Side.CREDIT,
    "refunds_payable": Side.CREDIT,
}


def revenue(tax_kind: int, district: str) -> str:
    """The revenue account of one tax kind (1 지방세, 2 세외, 3 상하수도) in one district."""
    return f"revenue:{tax_kind}:{district}"


def normal_side(account: str) -> Side:
    """The side on which `account` grows; ValueError for an account outside the chart."""
    try:
        return _NORMAL_SIDE[account.split(":", 1)[0]]
    except KeyError:
        raise ValueError(f"{account!r} is not in the chart of accounts") from None


@dataclass(frozen=True, slots=True)
class Line:
    """One entry of a posting: a positive amount on exactly one side of one account."""

    account: str
    debit: int = 0
    credit: int = 0

    def __post_init__(self) -> None:
        normal_side(self.account)
        if self.debit < 0 or self.credit < 0 or (self.debit == 0) == (self.credit == 0):
            raise ValueError(
                f"{self.account}: a line is a positive debit or a positive credit,"
                f" not debit {self.debit} and credit {self.credit}"
            )


def _signed(account: str, amount: int) -> Line:
    """A debit for a positive amount, a credit for a negative one."""
    return Line(account, debit=amount) if amount > 0 else Line(account, credit=-amount)


@dataclass(frozen=True, slots=True)
class Posting:
    """A balanced transaction to book once under `reference`."""

    kind: str
    reference: str
    lines: tuple[Line, ...]
    payment_id: UUID | None = None
    memo: str = ""

    def __post_init__(self) -> None:
        debits = sum(line.debit for line in self.lines)
        credits = sum(line.credit for line in self.lines)
        if len(self.lines) < 2 or debits != credits:
            raise ValueError(
                f"{self.reference} does not balance: {len(self.lines)} lines,"
                f" debits {debits}, credits {credits}"
            )

    def arguments(self) -> tuple[object, ...]:
        return (
            self.kind,
            self.reference,
            self.payment_id,
            self.memo,
            [line.account for line in self.lines],
            [line.debit for line in self.lines],
            [line.credit for line in self.lines],
        )


# One statement books a transaction and all its entries, or nothing if its reference is
# booked already (a concurrent poster of the same reference waits, then books nothing).
_POST = """
WITH tx AS (
    INSERT INTO ledger_transactions (kind, reference, payment_id, memo)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (reference) DO NOTHING
    RETURNING transaction_id
), entries AS (
    INSERT INTO ledger_entries (transaction_id, account, debit, credit)
    SELECT tx.transaction_id, e.account, e.debit, e.credit
      FROM tx, unnest($5::text[], $6::bigint[], $7::bigint[]) AS e (account, debit, credit)
)
SELECT transaction_id FROM tx
"""


async def post(
    conn: asyncpg.Connection,
    *,
    kind: str,
    reference: str,
    lines: Sequence[Line],
    payment_id: UUID | None = None,
    memo: str = "",
) -> int | None:
    """Book a posting in the caller's transaction: its transaction id, or None when
    `reference` was booked before (and nothing is booked now). ValueError if it does not
    balance."""
    posting = Posting(kind, reference, tuple(lines), payment_id, memo)
    transaction_id: int | None = await conn.fetchval(_POST, *posting.arguments())
    return transaction_id


async def post_many(conn: asyncpg.Connection, postings: Iterable[Posting]) -> None:
    """Book several postings in one round trip, each once by its reference."""
    await conn.executemany(_POST, [posting.arguments() for posting in postings])


def payment_posting(payment_id: UUID, tax_kind: int, district: str, amount: int) -> Posting:
    """A confirmed card payment: the gateway owes us the money, the district earned it."""
    return Posting(
        kind="payment",
        reference=f"payment:{payment_id}",
        payment_id=payment_id,
        lines=(
            Line(GATEWAY_RECEIVABLE, debit=amount),
            Line(revenue(tax_kind, district), credit=amount),
        ),
    )


async def payment_confirmed(
    conn: asyncpg.Connection, payment_id: UUID, tax_kind: int, district: str, amount: int
) -> int | None:
    """Book a confirmed payment (store.finish_confirmed books it in its own statement)."""
    posting = payment_posting(payment_id, tax_kind, district, amount)
    transaction_id: int | None = await conn.fetchval(_POST, *posting.arguments())
    return transaction_id


async def refund_done(
    conn: asyncpg.Connection,
    refund_id: UUID,
    payment_id: UUID,
    tax_kind: int,
    district: str,
    amount: int,
) -> int | None:
    """A refund the gateway made: the revenue is reversed and owed back to the card until
    the gateway nets it in a settlement."""
    return await post(
        conn,
        kind="refund",
        reference=f"refund:{refund_id}",
        payment_id=payment_id,
        lines=[
            Line(revenue(tax_kind, district), debit=amount),
            Line(REFUNDS_PAYABLE, credit=amount),
        ],
    )


def settlement(
    transaction_key: str, amount: int, fee: int, payout: int, payment_id: UUID | None
) -> Posting:
    """One line of the gateway's settlement file, booked under `settlement:<key>`.

    A payment (amount > 0) turns the receivable into the payout and the fee:
    Dr bank payout, Dr fees fee, Cr gateway_receivable amount. A cancel (amount < 0)
    clears the refund owed: Dr refunds_payable |amount|, Cr bank |payout|, and the fee the
    gateway gives back (negative) is a credit to fees. Zero lines are left out.
    ValueError unless payout = amount - fee.
    """
    if payout != amount - fee or amount == 0:
        raise ValueError(
            f"settlement {transaction_key}: amount {amount}, fee {fee}, payout {payout}"
            " (a payout is the non-zero amount less the fee)"
        )
    cleared = GATEWAY_RECEIVABLE if amount > 0 else REFUNDS_PAYABLE
    movements = ((BANK, payout), (GATEWAY_FEES, fee), (cleared, -amount))
    return Posting(
        kind="settlement",
        reference=f"settlement:{transaction_key}",
        lines=tuple(_signed(account, value) for account, value in movements if value != 0),
        payment_id=payment_id,
    )


class Balance(NamedTuple):
    """An account's totals; `balance` is positive on its normal side (debit - credit for
    assets and expenses, credit - debit for revenue and liabilities)."""

    account: str
    debit: int
    credit: int
    balance: int


class Totals(NamedTuple):
    debit: int
    credit: int


async def balances(db: asyncpg.Pool, prefix: str | None = None) -> list[Balance]:
    """Every account's balance, by account name; with `prefix`, that account and those
    below it (`revenue` → every revenue account, `revenue:1` → 지방세 of every district).
    `db` may be a pool or a connection."""
    rows = await db.fetch(
        "SELECT account, sum(debit)::bigint AS debit, sum(credit)::bigint AS credit"
        " FROM ledger_entries"
        " WHERE $1::text IS NULL OR account = $1 OR starts_with(account, $1 || ':')"
        " GROUP BY account ORDER BY account",
        prefix,
    )
    return [
        Balance(
            row["account"],
            row["debit"],
            row["credit"],
            row["debit"] - row["credit"]
            if normal_side(row["account"]) is Side.DEBIT
            else row["credit"] - row["debit"],
        )
        for row in rows
    ]


async def unbalanced_transactions(db: asyncpg.Pool) -> int:
    """How many transactions do not balance or have fewer than two entries: always 0 while
    the database's trigger stands (a check for tests and operators)."""
    count: int = await db.fetchval(
        "SELECT count(*) FROM ("
        " SELECT 1 FROM ledger_transactions t"
        " LEFT JOIN ledger_entries e USING (transaction_id)"
        " GROUP BY t.transaction_id"
        " HAVING count(e.entry_id) < 2"
        "  OR coalesce(sum(e.debit), 0) <> coalesce(sum(e.credit), 0)) AS wrong"
    )
    return count


async def totals(db: asyncpg.Pool) -> Totals:
    """All debits and all credits ever booked: equal in a sound ledger."""
    row = await db.fetchrow(
        "SELECT coalesce(sum(debit), 0)::bigint AS debit,"
        " coalesce(sum(credit), 0)::bigint AS credit FROM ledger_entries"
    )
    return Totals(row["debit"], row["credit"])
