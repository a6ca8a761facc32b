"""A thousand random payment operations with faults injected between them; afterwards the
ledger balances, no bill is paid twice, the hub and the gateway agree on every won, and
reconciliation finds exactly the discrepancies the test put into the settlement file."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from resolvers.payments import ledger, reconciliation, store
from schema.payments import flow
from tests.payments.helpers import Terminal, World, payments_world

pytestmark = pytest.mark.slow  # once per CI run: not again in the PostgreSQL 15 pass

OPERATIONS = 1000
SEED = 20261201


@pytest.fixture(scope="module")
async def world(migrated_url: str, kafka_bootstrap: str) -> AsyncIterator[World]:
    async with payments_world(migrated_url, kafka_bootstrap) as world:
        yield world


class Run:
    """The operations, and what the test itself did at the gateway behind the hub's back."""

    def __init__(self, world: World, rng: random.Random) -> None:
        self.world = world
        self.rng = rng
        self.bills: list[str] = []
        self.terminals: list[Terminal] = []
        self.confirmed: list[dict[str, Any]] = []
        self.outside_sales: list[str] = []  # order ids sold at the gateway, not through the hub
        self.counts: dict[str, int] = {}

    def bill(self) -> str:
        return self.rng.choice(self.bills)

    def terminal(self) -> Terminal:
        return self.rng.choice(self.terminals)

    async def step(self) -> None:
        name, operation = self.rng.choices(OPS, weights=[w for _, w, _ in OPS_TABLE])[0]
        self.counts[name] = self.counts.get(name, 0) + 1
        await operation(self)


async def op_pay(run: Run) -> None:
    answer = await run.world.pay(run.terminal().token, run.bill())
    if answer and answer.get("status") == "CONFIRMED":
        run.confirmed.append(answer)


async def op_pay_declined(run: Run) -> None:
    await run.world.pay(run.terminal().token, run.bill(), card="4000000000000002")


async def op_retry_confirm(run: Run) -> None:
    """The same confirm sent three times at once and once more: one charge, one answer."""
    world, terminal = run.world, run.terminal()
    collected = (await world.collect(terminal.token, run.bill())).get("data")
    if not collected:
        return
    order = collected["collectBill"]
    payment_key = await world.card_present(order["orderId"], order["amount"])
    key = str(uuid.uuid4())
    answers = await asyncio.gather(
        *(world.confirm(terminal.token, order["orderId"], payment_key, order["amount"], key)
          for _ in range(3))
    )  # fmt: skip
    again = await world.confirm(terminal.token, order["orderId"], payment_key, order["amount"], key)
    assert all(answer == again for answer in answers)


async def op_two_terminals(run: Run) -> None:
    bill = run.bill()
    answers = await asyncio.gather(
        *(run.world.collect(terminal.token, bill) for terminal in run.rng.sample(run.terminals, 2))
    )
    assert sum("errors" not in answer for answer in answers) <= 1


async def op_lost_answer(run: Run) -> None:
    """The gateway charges and never answers (every attempt within the budget)."""
    await run.world.gateway.inject(error="hang_after", path="/confirm", count=4)
    try:
        await run.world.pay(run.terminal().token, run.bill())
    finally:
        await run.world.gateway.clear()


async def op_gateway_down(run: Run) -> None:
    """The gateway answers 503 before doing anything."""
    await run.world.gateway.inject(error="5xx", path="/confirm", count=4)
    try:
        await run.world.pay(run.terminal().token, run.bill())
    finally:
        await run.world.gateway.clear()


async def op_tax_down(run: Run) -> None:
    await run.world.tax.inject(error="5xx", count=3)
    try:
        async with run.world.flow() as hub:
            await flow.deliver_notices(hub)
    finally:
        await run.world.tax.clear()


async def op_refund(run: Run) -> None:
    if not run.confirmed:
        return
    payment = run.rng.choice(run.confirmed)
    amount = run.rng.choice([None, 1_000, payment["amount"] // 2])
    await run.world.gql(
        run.world.supervisor,
        """mutation($p: UUID!, $a: Int, $k: String!) {
             refundPayment(paymentId: $p, amount: $a, reason: "민원", idempotencyKey: $k) {
               refund { status } } }""",
        {"p": payment["id"], "a": amount, "k": str(uuid.uuid4())},
    )


async def op_paid_elsewhere(run: Run) -> None:
    async with httpx.AsyncClient(base_url=run.world.tax.url) as http:
        await http.post(f"/_sandbox/bills/{run.bill()}/paid", json={"channel": "bank"})


async def op_webhook_mood(run: Run) -> None:
    await run.world.gateway_config(
        webhookDuplicate=run.rng.random() < 0.5,
        webhookReorder=run.rng.random() < 0.3,
        webhookDrop=run.rng.random() < 0.2,
    )


async def op_outside_sale(run: Run) -> None:
    """A sale at the gateway the hub never hears of (someone used the merchant key)."""
    world = run.world
    order_id = f"outside-{uuid.uuid4().hex}"
    payment_key = await world.card_present(order_id, 5_000)
    async with httpx.AsyncClient(base_url=world.gateway.url) as http:
        response = await http.post(
            "/v1/payments/confirm",
            json={"paymentKey": payment_key, "orderId": order_id, "amount": 5_000},
            headers=world.gateway_auth(),
        )
    response.raise_for_status()
    run.outside_sales.append(order_id)


async def op_work(run: Run) -> None:
    async with run.world.flow() as hub:
        await flow.deliver_notices(hub)
        await flow.recover(hub)


OPS_TABLE = [
    ("pay", 40, op_pay),
    ("pay_declined", 5, op_pay_declined),
    ("retry_confirm", 10, op_retry_confirm),
    ("two_terminals", 8, op_two_terminals),
    ("lost_answer", 2, op_lost_answer),
    ("gateway_down", 2, op_gateway_down),
    ("tax_down", 2, op_tax_down),
    ("refund", 10, op_refund),
    ("paid_elsewhere", 4, op_paid_elsewhere),
    ("webhook_mood", 3, op_webhook_mood),
    ("outside_sale", 1, op_outside_sale),
    ("work", 13, op_work),
]
OPS = [(name, operation) for name, _, operation in OPS_TABLE]


async def test_a_thousand_random_operations_with_faults_balance_and_reconcile(
    world: World,
) -> None:
    run = Run(world, random.Random(SEED))
    run.bills = await world.bills(400, district_code="11110", amount=21_000)
    run.terminals = [await world.terminal("11110", daily_limit=10**9) for _ in range(4)]
    for _ in range(OPERATIONS):
        await run.step()

    # Calm: no faults, every webhook delivered; the workers settle everything.
    await world.gateway.clear()
    await world.tax.clear()
    await world.gateway_config(webhookDuplicate=False, webhookReorder=False, webhookDrop=False)
    async with world.flow() as hub:
        hub = flow.Payments(hub.pool, hub.upstreams, hub.settings.model_copy(
            update={"confirm_stale_seconds": 0.001}
        ))  # fmt: skip
        for _ in range(20):
            await flow.recover(hub)
            while await flow.deliver_notices(hub):
                pass
            unsettled = await world.pool.fetchval(
                "SELECT count(*) FROM payments WHERE status IN ('confirming', 'unknown')"
            )
            pending = await world.pool.fetchval(
                "SELECT count(*) FROM payment_tax_notices WHERE status = 'pending'"
            )
            if unsettled == 0 and pending == 0:
                break
            await asyncio.sleep(0.2)
    assert unsettled == 0 and pending == 0, run.counts

    # The ledger balances, to the won, and is what the payments say.
    assert await ledger.unbalanced_transactions(world.pool) == 0
    totals = await ledger.totals(world.pool)
    assert totals.debit == totals.credit
    rows = await world.pool.fetch("SELECT * FROM payments WHERE epay_no = ANY($1)", run.bills)
    payments = [store.Payment(**dict(row)) for row in rows]
    booked = sum(p.amount for p in payments if p.status in store.PAID)
    refunded = sum(p.refunded_amount for p in payments)
    receivable = {b.account: b.balance for b in await ledger.balances(world.pool)}
    assert receivable.get(ledger.GATEWAY_RECEIVABLE, 0) == booked
    assert receivable.get(ledger.REFUNDS_PAYABLE, 0) == refunded

    # No bill holds more than one payment's money, and the gateway agrees with the hub.
    held: dict[str, int] = {}
    for payment in payments:
        if payment.status in ("confirmed", "partially_refunded"):
            held[payment.epay_no] = held.get(payment.epay_no, 0) + 1
        charged = await world.gateway_payment(payment.order_id)
        kept = payment.amount - payment.refunded_amount if payment.status in store.PAID else 0
        at_gateway = (
            charged["balanceAmount"]
            if charged and charged["status"] in ("DONE", "PARTIAL_CANCELED", "CANCELED")
            else 0
        )
        assert at_gateway == kept, (payment.order_id, payment.status, charged)
    assert all(count == 1 for count in held.values())

    # Reconciliation finds exactly what the test put in the settlement file.
    simple = [p for p in payments if p.status == "confirmed" and p.refunded_amount == 0]
    omitted, altered = simple[0], simple[1]
    await world.gateway_config(
        settlementOmitOrders=[omitted.order_id],
        settlementAlterAmounts={altered.order_id: altered.amount + 100},
    )
    async with world.flow() as hub:
        day = store.korea_today()
        report = await reconciliation.reconcile(
            world.pool, day, await (await hub.upstreams.gateway()).settlements(day)
        )
    found = {(item.kind, item.order_id) for item in report.items}
    expected = {("missing_at_gateway", omitted.order_id), ("amount_mismatch", altered.order_id)}
    expected |= {("missing_in_hub", order_id) for order_id in run.outside_sales}
    assert found == expected, run.counts
    assert report.matched > 0
    assert sum(run.counts.values()) == OPERATIONS
