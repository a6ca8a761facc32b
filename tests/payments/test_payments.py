"""Payments end to end: the hub over HTTP, the tax system and the gateway as sandboxes
over HTTP, terminals signed in with private_key_jwt."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
import websockets
from graphql import parse

from hub import domains
from hub.core.caller import Caller
from resolvers.payments import errors, ledger
from resolvers.payments.store import KST
from schema.builder import build_schema
from schema.cost import MAX_COST, document_cost
from schema.pagination import encode_cursor
from schema.payments import flow
from schema.payments.upstreams import WEBHOOK_PATH
from tests.oauth import REDIRECT, code_for
from tests.payments.helpers import PAYMENT_FIELDS, World, payments_world

pytestmark = pytest.mark.db


@pytest.fixture(scope="module")
async def world(migrated_url: str, kafka_bootstrap: str) -> AsyncIterator[World]:
    async with payments_world(migrated_url, kafka_bootstrap) as world:
        yield world


def code(answer: dict[str, Any]) -> str:
    return str(answer["errors"][0]["extensions"]["code"])


async def ledger_of(world: World, payment_id: str) -> list[tuple[str, int, int]]:
    rows = await world.pool.fetch(
        "SELECT e.account, e.debit, e.credit FROM ledger_entries e"
        " JOIN ledger_transactions t USING (transaction_id) WHERE t.payment_id = $1"
        " ORDER BY e.entry_id",
        uuid.UUID(payment_id),
    )
    return [(r["account"], r["debit"], r["credit"]) for r in rows]


async def test_a_counter_payment_is_confirmed_booked_receipted_and_notified(world: World) -> None:
    terminal = await world.terminal("11110")
    [epay_no] = await world.bills(district_code="11110", amount=40_000, payer_name="김철수")

    paid = await world.pay(terminal.token, epay_no)

    assert paid["status"] == "CONFIRMED"
    assert paid["amount"] == 40_000 and paid["payerName"] == "김*수"
    receipt = paid["receipt"]
    assert receipt["approvalNo"] and "*" in receipt["cardNumber"]
    assert receipt["items"] == [{"name": receipt["items"][0]["name"], "amount": 40_000}]
    assert await ledger_of(world, paid["id"]) == [
        ("gateway_receivable", 40_000, 0),
        (f"revenue:{await _kind(world, paid['id'])}:11110", 0, 40_000),
    ]
    async with world.flow() as hub:
        await flow.deliver_notices(hub)
        await flow.deliver_notices(hub)  # nothing more is owed: still one receipt
    records = await world.tax_records(epay_no)
    assert [r["receipt_no"] for r in records["receipts"]] == [receipt["number"]]

    async with httpx.AsyncClient(base_url=world.url) as http:
        page = await http.get(
            receipt["printPath"], headers={"Authorization": f"Bearer {terminal.token}"}
        )
        anonymous = await http.get(receipt["printPath"])
    assert page.status_code == 200 and receipt["approvalNo"] in page.text and "김*수" in page.text
    assert anonymous.status_code == 401
    audited = await world.pool.fetch(
        "SELECT client_id, action, fields FROM audit_log WHERE subject = $1", paid["id"]
    )
    assert audited and {row["client_id"] for row in audited} == {terminal.client_id}
    assert {row["action"] for row in audited} == {"payer.read"}


async def _kind(world: World, payment_id: str) -> int:
    return int(
        await world.pool.fetchval(
            "SELECT tax_kind FROM payments WHERE payment_id = $1", uuid.UUID(payment_id)
        )
    )


async def test_a_retried_confirm_charges_once_and_answers_the_same(world: World) -> None:
    terminal = await world.terminal("11110")
    [epay_no] = await world.bills(district_code="11110", amount=12_340)
    collect_key = str(uuid.uuid4())
    first = (await world.collect(terminal.token, epay_no, collect_key))["data"]["collectBill"]
    again = (await world.collect(terminal.token, epay_no, collect_key))["data"]["collectBill"]
    assert again == first  # the same key: the same payment, not a second one

    payment_key = await world.card_present(first["orderId"], first["amount"])
    key = str(uuid.uuid4())
    answers = await asyncio.gather(
        *(
            world.confirm(terminal.token, first["orderId"], payment_key, 12_340, key)
            for _ in range(3)
        )
    )
    later = await world.confirm(terminal.token, first["orderId"], payment_key, 12_340, key)
    bodies = [a["data"]["confirmPayment"] for a in [*answers, later]]
    assert all(body == bodies[0] for body in bodies)
    assert bodies[0]["status"] == "CONFIRMED"
    gateway = await world.gateway_payment(first["orderId"])
    assert gateway is not None and gateway["status"] == "DONE" and gateway["totalAmount"] == 12_340
    assert len(await ledger_of(world, first["id"])) == 2  # booked once

    reused = await world.confirm(terminal.token, first["orderId"], payment_key, 99, key)
    assert code(reused) == "IDEMPOTENCY_KEY_REUSED"


async def test_two_terminals_collecting_one_bill_make_one_payment(world: World) -> None:
    one, two = await world.terminal("11110"), await world.terminal("11110")
    [epay_no] = await world.bills(district_code="11110")
    answers = await asyncio.gather(
        world.collect(one.token, epay_no), world.collect(two.token, epay_no)
    )
    opened = [a for a in answers if "errors" not in a]
    refused = [a for a in answers if "errors" in a]
    assert len(opened) == 1 and [code(a) for a in refused] == ["BILL_IN_PAYMENT"]
    count = await world.pool.fetchval("SELECT count(*) FROM payments WHERE epay_no = $1", epay_no)
    assert count == 1


async def test_a_terminal_outside_its_district_or_over_its_limit_is_refused(world: World) -> None:
    terminal = await world.terminal("11110", daily_limit=50_000)
    [elsewhere] = await world.bills(district_code="11680")
    assert code(await world.collect(terminal.token, elsewhere)) == "OUTSIDE_DISTRICT"

    first, second = await world.bills(2, district_code="11110", amount=30_000)
    assert "errors" not in await world.collect(terminal.token, first)
    over = await world.collect(terminal.token, second)
    assert code(over) == "DAILY_LIMIT_EXCEEDED"
    assert over["errors"][0]["extensions"]["limit"] == 50_000


async def test_a_disabled_terminal_stops_at_once(world: World) -> None:
    terminal = await world.terminal("11110")
    [epay_no] = await world.bills(district_code="11110")
    disabled = await world.gql(
        world.supervisor,
        'mutation($t: String!) { disableTerminal(terminalId: $t, reason: "phone lost")'
        " { disabledAt } }",
        {"t": terminal.client_id},
    )
    assert disabled["data"]["disableTerminal"]["disabledAt"]
    answer = await world.collect(terminal.token, epay_no)
    assert code(answer) in ("UNAUTHENTICATED", "TERMINAL_DISABLED")


async def test_a_disabled_terminal_is_refused_before_its_key_is_claimed(world: World) -> None:
    """The terminal's row is read in the call that takes the idempotency key's lock: a
    disabled terminal (its tokens not yet refused) is told so and claims no key."""
    terminal = await world.terminal("11110")
    first, second = await world.bills(2, district_code="11110")
    collected = (await world.collect(terminal.token, first))["data"]["collectBill"]
    await world.pool.execute(
        "UPDATE payment_terminals SET disabled_at = now(), disabled_reason = 'phone lost'"
        " WHERE terminal_id = $1",
        terminal.client_id,
    )
    keys = [str(uuid.uuid4()), str(uuid.uuid4())]
    refused = await world.collect(terminal.token, second, keys[0])
    assert code(refused) == "TERMINAL_DISABLED"
    assert "phone lost" in refused["errors"][0]["message"]
    confirm = await world.confirm(
        terminal.token, collected["orderId"], "tsbx-never-read", collected["amount"], keys[1]
    )
    assert code(confirm) == "TERMINAL_DISABLED"
    claimed = await world.pool.fetchval(
        "SELECT count(*) FROM payment_idempotency_keys WHERE owner = $1 AND key = ANY($2)",
        terminal.client_id,
        keys,
    )
    assert claimed == 0


async def test_a_declined_card_fails_the_payment_and_frees_the_bill(world: World) -> None:
    terminal = await world.terminal("11110")
    [epay_no] = await world.bills(district_code="11110")
    failed = await world.pay(terminal.token, epay_no, card=_declining_card())
    assert failed["status"] == "FAILED" and failed["failureCode"] == "REJECT_CARD_PAYMENT"
    assert await ledger_of(world, failed["id"]) == []
    assert (await world.pay(terminal.token, epay_no))["status"] == "CONFIRMED"


def _declining_card() -> str:
    return "4000000000000002"  # the sandbox's test card declined with REJECT_CARD_PAYMENT


async def test_a_lost_confirm_answer_becomes_unknown_then_one_charge(world: World) -> None:
    terminal = await world.terminal("11110")
    [epay_no] = await world.bills(district_code="11110", amount=7_000)
    collected = (await world.collect(terminal.token, epay_no))["data"]["collectBill"]
    payment_key = await world.card_present(collected["orderId"], 7_000)

    await world.gateway_config(webhookDrop=True)  # this time only a lookup can tell
    await world.gateway.inject(error="hang_after", path="/confirm")  # charged, never answered
    unknown = await world.confirm(terminal.token, collected["orderId"], payment_key, 7_000)
    await world.gateway.clear()
    await world.gateway_config(webhookDrop=False)
    assert unknown["data"]["confirmPayment"]["status"] == "UNKNOWN"
    gateway = await world.gateway_payment(collected["orderId"])
    assert gateway is not None and gateway["status"] == "DONE"  # the money did move

    async with world.flow() as hub:
        await flow.recover(hub)
    status = await world.gql(
        terminal.token,
        "query($o: String!) { payment(orderId: $o) { status receipt { number } } }",
        {"o": collected["orderId"]},
    )
    assert status["data"]["payment"]["status"] == "CONFIRMED"
    assert len(await ledger_of(world, collected["id"])) == 2


async def test_webhooks_are_verified_deduplicated_and_resolve_unknown_payments(
    world: World,
) -> None:
    terminal = await world.terminal("11110")
    [epay_no] = await world.bills(district_code="11110", amount=8_800)
    collected = (await world.collect(terminal.token, epay_no))["data"]["collectBill"]
    payment_key = await world.card_present(collected["orderId"], 8_800)
    await world.gateway.inject(error="hang_after", path="/confirm")
    await world.confirm(terminal.token, collected["orderId"], payment_key, 8_800)
    await world.gateway.clear()

    # The sandbox's own webhook (signed, DONE) arrives and resolves it.
    await _until(world, collected["orderId"], "CONFIRMED")
    assert len(await ledger_of(world, collected["id"])) == 2

    payment = await world.gateway_payment(collected["orderId"])
    body = orjson.dumps(
        {"eventType": "PAYMENT_STATUS_CHANGED", "createdAt": payment["approvedAt"], "data": payment}  # type: ignore[index]
    )
    async with httpx.AsyncClient(base_url=world.url) as http:
        forged = await http.post(WEBHOOK_PATH, content=body, headers=_signed(body, "wrong-secret"))
        secret = world.gateway.settings()["webhook_secret"]
        headers = _signed(body, secret)
        first = await http.post(WEBHOOK_PATH, content=body, headers=headers)
        replayed = await http.post(WEBHOOK_PATH, content=body, headers=headers)
        stale = await http.post(
            WEBHOOK_PATH, content=body, headers=_signed(body, secret, at=time.time() - 3600)
        )
    assert forged.status_code == 401
    assert first.status_code == 200 and first.text == "no_change"  # late: already confirmed
    assert replayed.status_code == 200 and replayed.text == "duplicate"
    assert stale.status_code == 401
    assert len(await ledger_of(world, collected["id"])) == 2


def _signed(body: bytes, secret: str, at: float | None = None) -> dict[str, str]:
    # Toss's transmission time: KST with its offset, to the second.
    moment = datetime.fromtimestamp(at if at is not None else time.time(), KST).isoformat(
        timespec="seconds"
    )
    mac = hmac.new(secret.encode(), body + b":" + moment.encode(), hashlib.sha256).digest()
    return {
        "content-type": "application/json",
        "tosspayments-webhook-transmission-id": f"wh_{uuid.uuid4().hex}",
        "tosspayments-webhook-transmission-time": moment,
        "tosspayments-webhook-signature": "v1:" + base64.b64encode(mac).decode(),
    }


async def _until(world: World, order_id: str, status: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = await world.pool.fetchval(
            "SELECT status FROM payments WHERE order_id = $1", order_id
        )
        if found == status.lower():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"payment {order_id} is {found}, not {status}")


async def test_refunds_partial_then_full_are_reversed_and_notified(world: World) -> None:
    terminal = await world.terminal("11110")
    [epay_no] = await world.bills(district_code="11110", amount=50_000)
    paid = await world.pay(terminal.token, epay_no)
    refund = """mutation($p: UUID!, $a: Int, $k: String!) {
      refundPayment(paymentId: $p, amount: $a, reason: "과오납", idempotencyKey: $k) {
        payment { status refundedAmount } refund { amount status } } }"""
    partial = await world.gql(world.supervisor, refund, {"p": paid["id"], "a": 20_000, "k": "r1"})
    assert partial["data"]["refundPayment"]["payment"] == {
        "status": "PARTIALLY_REFUNDED",
        "refundedAmount": 20_000,
    }
    too_much = await world.gql(world.supervisor, refund, {"p": paid["id"], "a": 40_000, "k": "r2"})
    assert code(too_much) == "REFUND_EXCEEDS_BALANCE"
    rest = await world.gql(world.supervisor, refund, {"p": paid["id"], "a": None, "k": "r3"})
    assert rest["data"]["refundPayment"]["payment"]["status"] == "REFUNDED"
    refused = await world.gql(terminal.token, refund, {"p": paid["id"], "a": None, "k": "r4"})
    assert code(refused) in ("FORBIDDEN", "UNAUTHORIZED")

    gateway = await world.gateway_payment(paid["orderId"])
    assert gateway is not None and gateway["status"] == "CANCELED" and gateway["balanceAmount"] == 0
    entries = await ledger_of(world, paid["id"])
    assert sum(d for a, d, _ in entries if a.startswith("revenue:")) == 50_000
    assert sum(c for a, _, c in entries if a == "refunds_payable") == 50_000
    async with world.flow() as hub:
        await flow.deliver_notices(hub)  # the receipt first: cancels wait for it
        await flow.deliver_notices(hub)
    records = await world.tax_records(epay_no)
    assert len(records["receipts"]) == 1
    assert sum(c["amount"] for c in records["cancels"]) == 50_000


async def test_a_bill_paid_elsewhere_meanwhile_is_refunded_automatically(world: World) -> None:
    terminal = await world.terminal("11110")
    [epay_no] = await world.bills(district_code="11110", amount=33_000)
    paid = await world.pay(terminal.token, epay_no)
    async with httpx.AsyncClient(base_url=world.tax.url) as http:
        (
            await http.post(f"/_sandbox/bills/{epay_no}/paid", json={"channel": "bank"})
        ).raise_for_status()
    async with world.flow() as hub:
        await flow.deliver_notices(hub)
    status = await world.pool.fetchrow(
        "SELECT status, refunded_amount FROM payments WHERE payment_id = $1", uuid.UUID(paid["id"])
    )
    assert dict(status) == {"status": "refunded", "refunded_amount": 33_000}
    gateway = await world.gateway_payment(paid["orderId"])
    assert gateway is not None and gateway["status"] == "CANCELED"
    assert await ledger.unbalanced_transactions(world.pool) == 0


async def test_a_citizen_pays_their_own_bill_from_a_private_app(world: World) -> None:
    app = await world.clients.client(scope_names="payments:pay", redirect_uris=[REDIRECT])
    grant, verifier = await code_for(world.clients, app.client_id, scope="payments:pay")
    async with httpx.AsyncClient(base_url=world.url) as http:
        tokens = await http.post(
            "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": grant,
                "redirect_uri": REDIRECT,
                "code_verifier": verifier,
            },
            auth=(app.client_id, app.client_secret or ""),
        )
    citizen = tokens.json()["access_token"]
    [epay_no] = await world.bills(district_code="11680", amount=15_000)  # any district online

    paid = await world.pay(citizen, epay_no)

    assert paid["status"] == "CONFIRMED" and paid["terminalId"] is None
    channel = await world.pool.fetchrow(
        "SELECT channel, user_id FROM payments WHERE payment_id = $1", uuid.UUID(paid["id"])
    )
    assert channel["channel"] == "online" and channel["user_id"] is not None
    grant, verifier = await code_for(world.clients, app.client_id, scope="payments:pay")
    async with httpx.AsyncClient(base_url=world.url) as http:
        other = await http.post(
            "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": grant,
                "redirect_uri": REDIRECT,
                "code_verifier": verifier,
            },
            auth=(app.client_id, app.client_secret or ""),
        )
    neighbour = other.json()["access_token"]  # another citizen, the same app
    listed = await world.gql(neighbour, "{ payments { nodes { id } } }")
    assert listed["data"]["payments"]["nodes"] == []
    peek = await world.gql(
        neighbour, "query($i: UUID!) { payment(id: $i) { id } }", {"i": paid["id"]}
    )
    assert code(peek) == "PAYMENT_NOT_FOUND"
    mine = await world.gql(citizen, "{ payments { nodes { id } } }")
    assert [p["id"] for p in mine["data"]["payments"]["nodes"]] == [paid["id"]]
    app_token = await world.clients.token("payments:pay")  # the app alone, no citizen
    assert code(await world.collect(app_token, epay_no)) == "FORBIDDEN"


async def test_a_terminal_follows_its_payment_status_until_final(world: World) -> None:
    terminal = await world.terminal("11110")
    [epay_no] = await world.bills(district_code="11110", amount=9_900)
    collected = (await world.collect(terminal.token, epay_no))["data"]["collectBill"]
    url = world.url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
        init = {"Authorization": f"Bearer {terminal.token}"}
        await ws.send(json.dumps({"type": "connection_init", "payload": init}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        query = "subscription($o: String!) { paymentStatus(orderId: $o) { status } }"
        payload = {"query": query, "variables": {"o": collected["orderId"]}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert first["payload"]["data"]["paymentStatus"]["status"] == "REQUESTED"
        payment_key = await world.card_present(collected["orderId"], 9_900)
        await world.confirm(terminal.token, collected["orderId"], payment_key, 9_900)
        seen = []
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if message["type"] == "complete":
                break
            seen.append(message["payload"]["data"]["paymentStatus"]["status"])
    assert seen[-1] == "CONFIRMED"  # and the stream ended there


PAGE = """query($t: String, $n: Int!, $a: String) {
  payments(terminalId: $t, first: $n, after: $a) {
    edges { cursor node { id } } pageInfo { hasNextPage hasPreviousPage endCursor }
  }
}"""


async def test_payments_page_through_with_cursors_each_once_newest_first(world: World) -> None:
    terminal = await world.terminal("11110")
    ids = [
        (await world.collect(terminal.token, epay_no))["data"]["collectBill"]["id"]
        for epay_no in await world.bills(5, district_code="11110", amount=1_000)
    ]
    # Three of them requested in the same microsecond: their ids order them.
    now = datetime.now(UTC).replace(microsecond=0)
    times = [now - timedelta(seconds=2), *[now - timedelta(seconds=1)] * 3, now]
    for payment_id, at in zip(ids, times, strict=True):
        await world.pool.execute(
            "UPDATE payments SET requested_at = $2 WHERE payment_id = $1",
            uuid.UUID(payment_id),
            at,
        )
    newest_first = [ids[4], *sorted(ids[1:4], key=uuid.UUID, reverse=True), ids[0]]

    # The terminal (its own payments) and a supervisor (anyone's, by terminalId).
    for token, terminal_id in ((terminal.token, None), (world.supervisor, terminal.client_id)):
        pages, after = [], None
        while True:
            answer = await world.gql(token, PAGE, {"t": terminal_id, "n": 2, "a": after})
            page = answer["data"]["payments"]
            pages.append(page)
            after = page["pageInfo"]["endCursor"]
            assert page["edges"][-1]["cursor"] == after
            if not page["pageInfo"]["hasNextPage"]:
                break
        seen = [edge["node"]["id"] for page in pages for edge in page["edges"]]
        assert seen == newest_first
        assert [len(page["edges"]) for page in pages] == [2, 2, 1]
        assert [page["pageInfo"]["hasPreviousPage"] for page in pages] == [False, True, True]

    for forged in ("bm90IGEgY3Vyc29y", encode_cursor(1, 2), encode_cursor("2026-12-01", "x")):
        refused = await world.gql(terminal.token, PAGE, {"n": 2, "a": forged})
        assert code(refused) == "BAD_USER_INPUT", refused
        assert refused["errors"][0]["extensions"]["argument"] == "after"
    assert code(await world.gql(terminal.token, PAGE, {"n": 501})) == "BAD_USER_INPUT"


def test_a_full_page_of_payments_with_receipts_fits_the_query_budget() -> None:
    """A receipt has at most two items (the bill's, its late fee): counted as 50, the
    largest page of payments with their receipts was refused as too costly."""
    schema = build_schema(domains.select("payments"))._schema
    query = f"{{ payments(first: 500) {{ edges {{ cursor node {{ {PAYMENT_FIELDS} }} }} }} }}"
    assert document_cost(schema, parse(query)) <= MAX_COST


async def test_finance_sees_balances_and_reconciles_a_day(world: World) -> None:
    terminal = await world.terminal("11110")
    [epay_no] = await world.bills(district_code="11110", amount=61_000)
    paid = await world.pay(terminal.token, epay_no)
    balances = await world.gql(
        world.supervisor, '{ ledgerBalances(prefix: "revenue") { account balance } }'
    )
    revenue = {b["account"]: b["balance"] for b in balances["data"]["ledgerBalances"]}
    kind = await _kind(world, paid["id"])
    assert revenue[f"revenue:{kind}:11110"] >= 61_000
    day = datetime.now(KST).date().isoformat()
    report = await world.gql(
        world.supervisor,
        "mutation($d: Date!) { reconcile(day: $d) { day matched missingInHub"
        " missingAtGateway amountMismatch gatewayFees items { kind orderId explanation } } }",
        {"d": day},
    )
    found = report["data"]["reconcile"]
    assert found["matched"] >= 1 and found["gatewayFees"] > 0
    stored = await world.gql(
        world.supervisor, "query($d: Date!) { reconciliation(day: $d) { matched } }", {"d": day}
    )
    assert stored["data"]["reconciliation"]["matched"] == found["matched"]
    denied = await world.gql(terminal.token, "{ ledgerBalances { account } }")
    assert code(denied) == "FORBIDDEN"


async def test_another_domain_charges_through_the_python_api(world: World) -> None:
    """A domain's charge (a waste pickup's fee): paid like a bill, booked as non-tax
    revenue of the district, never notified to the tax system, one live payment per
    reference."""
    terminal = await world.terminal("11440")
    reference = str(uuid.uuid4())
    async with world.flow() as hub:
        who = await flow.collector(world.pool, _caller_of(terminal))
        opened = await flow.charge(
            hub,
            who,
            source="waste",
            reference=reference,
            district_code="11440",
            item="음식물류 폐기물 수거 수수료",
            amount=3_600,
            payer_name="한식당",
            key=str(uuid.uuid4()),
        )
        payment_key = await world.card_present(opened.order_id, 3_600)
        paid = await world.confirm(terminal.token, opened.order_id, payment_key, 3_600)
        assert paid["data"]["confirmPayment"]["status"] == "CONFIRMED"
        with pytest.raises(errors.BillAlreadyPaid):
            await flow.charge(
                hub,
                who,
                source="waste",
                reference=reference,
                district_code="11440",
                item="음식물류 폐기물 수거 수수료",
                amount=3_600,
                payer_name="한식당",
                key=str(uuid.uuid4()),
            )
    entries = await ledger_of(world, str(opened.payment_id))
    assert entries == [("gateway_receivable", 3_600, 0), ("revenue:2:11440", 0, 3_600)]
    notices = await world.pool.fetchval(
        "SELECT count(*) FROM payment_tax_notices WHERE payment_id = $1", opened.payment_id
    )
    assert notices == 0


def _caller_of(terminal: Any) -> Caller:
    return Caller(client_id=terminal.client_id, scopes=frozenset({"payments:collect"}))


async def test_a_request_abandoned_past_its_window_frees_the_bill(world: World) -> None:
    one, two = await world.terminal("11110"), await world.terminal("11110")
    [epay_no] = await world.bills(district_code="11110")
    first = (await world.collect(one.token, epay_no))["data"]["collectBill"]
    assert code(await world.collect(two.token, epay_no)) == "BILL_IN_PAYMENT"
    await world.pool.execute(
        "UPDATE payments SET requested_at = now() - interval '11 minutes' WHERE order_id = $1",
        first["orderId"],
    )
    second = await world.collect(two.token, epay_no)
    assert second["data"]["collectBill"]["status"] == "REQUESTED"
    expired = await world.pool.fetchval(
        "SELECT status FROM payments WHERE order_id = $1", first["orderId"]
    )
    assert expired == "expired"
