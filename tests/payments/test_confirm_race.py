"""The confirm's answer and the gateway's webhook confirming one payment at once: one
books it, the other waits for its commit and gets the payment as booked, in one
statement (payment_now, 0036), without booking it again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from hub.core import db
from hub.core.settings import Settings
from resolvers.payments import store
from tests.payments.ledger_helpers import insert_payment

pytestmark = pytest.mark.db


@pytest.fixture(scope="module")
async def pool(migrated_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(migrated_url, Settings.from_env())
    yield pool
    await pool.close()


async def test_the_second_confirmation_gets_the_payment_the_first_booked(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        payment_id, _, payment_key = await insert_payment(conn, 25_000, status="confirming")
        payment = await store.by_id(conn, payment_id)
    assert payment is not None
    approval = {
        "payment_key": payment_key,
        "method": "카드",
        "card_number": "40000000****109*",
        "approve_no": "00000001",
        "approved_at": datetime.now(UTC),
    }
    async with pool.acquire() as first, pool.acquire() as second:
        async with first.transaction():
            booked = await store.finish_confirmed(first, payment, **approval)
            waiting = asyncio.create_task(store.finish_confirmed(second, payment, **approval))
            await asyncio.sleep(0.3)
            assert not waiting.done()  # it waits for the first's lock
        found = await waiting
    assert booked.booked_now and booked.payment.status == "confirmed"
    assert not found.booked_now
    assert found.payment == booked.payment  # as the first committed it, not as before
    postings = await pool.fetchval(
        "SELECT count(*) FROM ledger_transactions WHERE payment_id = $1", payment_id
    )
    assert postings == 1
    async with pool.acquire() as conn:  # and a late one, after both
        again = await store.finish_confirmed(conn, payment, **approval)
    assert not again.booked_now and again.payment == booked.payment
