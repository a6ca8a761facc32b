"""The tosspayments adapter against its sandbox over real HTTP: confirm, idempotency keys,
lost answers, cancels, the settlement file and signed webhooks."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters.errors import UpstreamRejected, UpstreamServerError, UpstreamTimeout
from adapters.kinds import Declined, GatewayPayment, WebhookRejected
from adapters.resilience import REGISTRY
from adapters.sandbox.server import RunningSandbox, Sandbox, running
from adapters.tosspayments import TossPayments, TossPaymentsSettings, adapter
from adapters.tosspayments.sandbox import SANDBOX, SECRET_KEY, WEBHOOK_SECRET
from adapters.tosspayments.sandbox.app import Config
from adapters.tosspayments.sandbox.gateway import DECLINES
from adapters.tosspayments.wire import KST, SETTLEMENT_COLUMNS, basic_auth

BUDGET = 1.0


@pytest.fixture
async def served() -> AsyncIterator[RunningSandbox]:
    async with running(SANDBOX) as sandbox:
        yield sandbox
        await configure(sandbox, webhookUrl=None)  # stop deliveries still under way


def connect(served: RunningSandbox, **values: Any) -> TossPayments:
    settings = adapter.read_settings(**served.settings() | {"timeout_seconds": BUDGET} | values)
    assert isinstance(settings, TossPaymentsSettings)
    return TossPayments(settings)


@pytest.fixture
async def toss(served: RunningSandbox) -> AsyncIterator[TossPayments]:
    gateway = connect(served)
    yield gateway
    await gateway.aclose()


async def tap(served: RunningSandbox, order_id: str, amount: int, card: str | None = None) -> str:
    """What the SoftPOS SDK does on the phone: read the card, open a session; its key."""
    body: dict[str, Any] = {"orderId": order_id, "amount": amount, "orderName": "자동차세"}
    if card is not None:
        body["cardNumber"] = card
    async with httpx.AsyncClient(base_url=served.url) as http:
        response = await http.post("/v1/sandbox/card-present", json=body)
    response.raise_for_status()
    assert response.json()["status"] == "IN_PROGRESS"
    return str(response.json()["paymentKey"])


async def configure(served: RunningSandbox, **changes: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=served.url) as http:
        response = await http.post("/_sandbox/config", json=changes)
    response.raise_for_status()
    return dict(response.json())


async def paid(
    served: RunningSandbox, toss: TossPayments, order_id: str, amount: int
) -> GatewayPayment:
    key = await tap(served, order_id, amount)
    return await toss.confirm(key, order_id, amount, idempotency_key=f"confirm-{order_id}")


async def test_a_tapped_card_is_confirmed_with_its_masked_number_and_approval(
    served: RunningSandbox, toss: TossPayments
) -> None:
    key = await tap(served, "order-0001", 35_000)
    before = await toss.payment(key)
    assert before is not None and before.status == "IN_PROGRESS" and before.approve_no == ""

    payment = await toss.confirm(key, "order-0001", 35_000, idempotency_key="k-0001")

    assert payment.status == "DONE" and payment.method == "카드"
    assert payment.card_number == "40000000****109*"
    assert len(payment.approve_no) == 8 and payment.approve_no.isdigit()
    assert payment.total_amount == payment.balance_amount == 35_000
    assert payment.approved_at is not None and payment.approved_at.tzinfo is UTC
    assert await toss.payment(key) == payment
    assert await toss.payment_by_order("order-0001") == payment
    assert await toss.payment("tsbx-no-such-key") is None
    assert await toss.payment_by_order("order-none") is None


async def test_a_confirm_resent_with_its_key_answers_the_same_and_charges_once(
    served: RunningSandbox, toss: TossPayments
) -> None:
    key = await tap(served, "order-0002", 12_000)
    answers = await asyncio.gather(
        *(toss.confirm(key, "order-0002", 12_000, idempotency_key="k-0002") for _ in range(5))
    )
    assert all(answer == answers[0] for answer in answers) and answers[0].status == "DONE"

    with pytest.raises(Declined) as again:  # a new key: the gateway knows it is done
        await toss.confirm(key, "order-0002", 12_000, idempotency_key="k-0002-new")
    assert again.value.code == "ALREADY_PROCESSED_PAYMENT"
    rows = await toss.settlements(datetime.now(KST).date())
    assert [(row.kind, row.amount) for row in rows if row.order_id == "order-0002"] == [
        ("PAYMENT", 12_000)
    ]


async def test_a_key_reused_for_another_body_is_declined(
    served: RunningSandbox, toss: TossPayments
) -> None:
    key = await tap(served, "order-0003", 9_000)
    with pytest.raises(Declined) as wrong_amount:
        await toss.confirm(key, "order-0003", 8_000, idempotency_key="k-0003")
    assert wrong_amount.value.code == "INVALID_REQUEST"
    with pytest.raises(Declined) as replayed:  # the first answer, an error, is stored too
        await toss.confirm(key, "order-0003", 8_000, idempotency_key="k-0003")
    assert replayed.value.code == "INVALID_REQUEST"

    with pytest.raises(Declined) as reused:
        await toss.confirm(key, "order-0003", 9_000, idempotency_key="k-0003")
    assert reused.value.code == "IDEMPOTENCY_KEY_REUSED"

    payment = await toss.confirm(key, "order-0003", 9_000, idempotency_key="k-0003-right")
    assert payment.status == "DONE"

    await configure(served, clockOffsetSeconds=15 * 86_400 + 1)  # keys are kept 15 days
    with pytest.raises(Declined) as fresh:
        await toss.confirm(key, "order-0003", 9_000, idempotency_key="k-0003")
    assert fresh.value.code == "ALREADY_PROCESSED_PAYMENT"  # carried out as a new request


async def test_a_declined_card_is_neither_retried_nor_counted_as_an_outage(
    served: RunningSandbox, toss: TossPayments
) -> None:
    rejected = {"upstream": "tosspayments", "kind": "rejected"}
    errors_before = REGISTRY.get_sample_value("ieum_upstream_errors_total", rejected) or 0.0
    orders = [f"order-decl-{n}" for n in range(7)]  # more than the breaker's threshold of 5
    keys = [await tap(served, order, 5_000, card="9410123412340002") for order in orders]
    served_before = served.injector.served
    for order, key in zip(orders, keys, strict=True):
        with pytest.raises(Declined) as declined:
            await toss.confirm(key, order, 5_000, idempotency_key=f"k-{order}")
        assert declined.value.code == "REJECT_CARD_PAYMENT"
    assert served.injector.served - served_before == len(orders)  # each sent once
    assert (REGISTRY.get_sample_value("ieum_upstream_errors_total", rejected) or 0.0) == (
        errors_before
    )
    aborted = await toss.payment(keys[0])  # the breaker is still closed
    assert aborted is not None and aborted.status == "ABORTED"

    key = await tap(served, "order-auth-count", 5_000, card="4000000000000003")
    with pytest.raises(Declined, match="EXCEED_MAX_AUTH_COUNT"):
        await toss.confirm(key, "order-auth-count", 5_000, idempotency_key="k-auth")


async def test_unknown_and_expired_sessions_are_not_found(
    served: RunningSandbox, toss: TossPayments
) -> None:
    with pytest.raises(Declined, match="NOT_FOUND_PAYMENT_SESSION"):
        await toss.confirm("tsbx-unknown", "order-0004", 1_000, idempotency_key="k-unknown")
    key = await tap(served, "order-0004", 1_000)
    await configure(served, clockOffsetSeconds=601)  # the session's 10 minutes are over
    with pytest.raises(Declined, match="NOT_FOUND_PAYMENT_SESSION"):
        await toss.confirm(key, "order-0004", 1_000, idempotency_key="k-0004")
    expired = await toss.payment(key)
    assert expired is not None and expired.status == "EXPIRED"


@pytest.mark.parametrize(
    ("fault", "error"), [("hang_after", UpstreamTimeout), ("5xx_after", UpstreamServerError)]
)
async def test_a_confirm_whose_answer_is_lost_is_found_and_resent_without_a_second_charge(
    served: RunningSandbox, toss: TossPayments, fault: str, error: type[Exception]
) -> None:
    order = f"order-lost-{fault}"
    key = await tap(served, order, 20_000)
    await served.inject(error=fault, path="/v1/payments/confirm")
    started = time.monotonic()
    with pytest.raises(error):
        await toss.confirm(key, order, 20_000, idempotency_key=f"k-{order}")
    assert time.monotonic() - started < BUDGET + 0.5
    await served.clear()

    found = await toss.payment_by_order(order)  # the money moved though no answer came
    assert found is not None and found.status == "DONE"
    resent = await toss.confirm(key, order, 20_000, idempotency_key=f"k-{order}")
    assert resent == found
    rows = await toss.settlements(datetime.now(KST).date())
    assert [row.amount for row in rows if row.order_id == order] == [20_000]


async def test_a_payment_is_cancelled_in_part_then_in_full(
    served: RunningSandbox, toss: TossPayments
) -> None:
    payment = await paid(served, toss, "order-0005", 10_000)
    key = payment.payment_key

    part = await toss.cancel(key, 3_000, "일부 환불", idempotency_key="c-1")
    assert (part.status, part.balance_amount) == ("PARTIAL_CANCELED", 7_000)
    assert await toss.cancel(key, 3_000, "일부 환불", idempotency_key="c-1") == part  # resent
    with pytest.raises(Declined) as too_much:
        await toss.cancel(key, 8_000, "초과", idempotency_key="c-2")
    assert too_much.value.code == "NOT_CANCELABLE_AMOUNT"

    rest = await toss.cancel(key, 7_000, "전액 환불", idempotency_key="c-3")
    assert (rest.status, rest.balance_amount) == ("CANCELED", 0)
    assert [(c.amount, c.reason) for c in rest.cancels] == [
        (3_000, "일부 환불"),
        (7_000, "전액 환불"),
    ]
    assert len({c.transaction_key for c in rest.cancels}) == 2
    with pytest.raises(Declined, match="ALREADY_CANCELED_PAYMENT"):
        await toss.cancel(key, 1, "again", idempotency_key="c-4")


async def test_the_settlement_file_lists_exactly_the_days_transactions(
    served: RunningSandbox, toss: TossPayments
) -> None:
    await configure(served, clockOffsetSeconds=-86_400)
    yesterday = await paid(served, toss, "order-yday", 4_000)
    await configure(served, clockOffsetSeconds=0)
    first = await paid(served, toss, "order-st-1", 10_000)
    second = await paid(served, toss, "order-st-2", 12_345)
    cancelled = await toss.cancel(first.payment_key, 2_500, "일부", idempotency_key="c-st")
    await tap(served, "order-st-unconfirmed", 7_000)  # no money moved: not settled
    assert first.approved_at is not None and yesterday.approved_at is not None
    today = first.approved_at.astimezone(KST).date()

    rows = await toss.settlements(today)
    assert [(r.kind, r.order_id, r.amount, r.fee, r.payout) for r in rows] == [
        ("PAYMENT", "order-st-1", 10_000, 80, 9_920),
        ("PAYMENT", "order-st-2", 12_345, 99, 12_246),  # 0.8 % = 98.76, half up
        ("CANCEL", "order-st-1", -2_500, -20, -2_480),
    ]
    assert {r.settlement_date for r in rows} == {today}
    assert rows[1].transaction_key != rows[0].transaction_key
    assert rows[2].transaction_key == cancelled.cancels[0].transaction_key
    assert rows[1].payment_key == second.payment_key and rows[1].transacted_at.tzinfo is UTC
    old = await toss.settlements(yesterday.approved_at.astimezone(KST).date())
    assert [(r.order_id, r.amount) for r in old] == [("order-yday", 4_000)]

    await configure(
        served,
        settlementOmitOrders=["order-st-2"],
        settlementAlterAmounts={"order-st-1": 11_000},
    )
    tampered = await toss.settlements(today)
    assert [(r.kind, r.order_id, r.amount, r.fee) for r in tampered] == [
        ("PAYMENT", "order-st-1", 11_000, 88),
        ("CANCEL", "order-st-1", -2_500, -20),
    ]


async def test_a_wrong_secret_key_is_an_upstream_rejection(served: RunningSandbox) -> None:
    wrong = connect(served, secret_key="test_sk_not_ours")
    try:
        with pytest.raises(UpstreamRejected, match="UNAUTHORIZED_KEY"):
            await wrong.health()
    finally:
        await wrong.aclose()


async def test_latency_injected_on_the_gateways_paths_slows_its_answers(
    served: RunningSandbox, toss: TossPayments
) -> None:
    key = await tap(served, "order-slow", 1_000)
    await served.inject(latency_seconds=0.3, path="/v1/payments")
    started = time.monotonic()
    await toss.confirm(key, "order-slow", 1_000, idempotency_key="k-slow")
    assert time.monotonic() - started >= 0.3


@dataclass
class Receiver:
    """A merchant's webhook endpoint on loopback: records requests, answers as told."""

    url: str = ""
    received: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    failures: int = 0  # answer 503 to this many requests first
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            self.received.append((await request.body(), dict(request.headers)))
            self.arrived.set()
            if self.failures > 0:
                self.failures -= 1
                return Response(status_code=503)
            return Response("ok")

        return Starlette(routes=[Route("/hook", hook, methods=["POST"])])

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()

    def statuses(self) -> list[str]:
        return [json.loads(body)["data"]["status"] for body, _ in self.received]


@pytest.fixture
async def receiver(served: RunningSandbox) -> AsyncIterator[Receiver]:
    endpoint = Receiver()
    async with running(
        Sandbox("receiver", "webhook receiver", endpoint.app, lambda url: {})
    ) as server:
        endpoint.url = server.url + "/hook"
        await configure(served, webhookUrl=endpoint.url, webhookRetrySeconds=0.05)
        yield endpoint
        await configure(served, webhookUrl=None)


async def test_a_webhook_is_signed_and_verified_and_a_forged_or_stale_one_refused(
    served: RunningSandbox, toss: TossPayments, receiver: Receiver
) -> None:
    payment = await paid(served, toss, "order-wh-1", 15_000)
    await receiver.wait_for(1)
    body, headers = receiver.received[0]

    event = toss.verify_webhook(body, headers)
    assert event.event_type == "PAYMENT_STATUS_CHANGED"
    assert event.event_id == headers["tosspayments-webhook-transmission-id"]
    assert event.payment == payment and event.created_at.tzinfo is UTC

    tampered = body.replace(b'"totalAmount":15000', b'"totalAmount":1')
    assert tampered != body
    with pytest.raises(WebhookRejected, match="bad signature"):
        toss.verify_webhook(tampered, headers)
    with pytest.raises(WebhookRejected, match="missing header"):
        toss.verify_webhook(body, {"content-type": "application/json"})
    hours_ago = (datetime.now(KST) - timedelta(hours=1)).isoformat(timespec="seconds")
    old = headers | signed(body, hours_ago, WEBHOOK_SECRET)
    with pytest.raises(WebhookRejected, match="stale"):
        toss.verify_webhook(body, old)
    now = datetime.now(KST).isoformat(timespec="seconds")
    with pytest.raises(WebhookRejected, match="bad signature"):
        toss.verify_webhook(body, headers | signed(body, now, "someone-elses-secret"))


def signed(body: bytes, at: str, secret: str) -> dict[str, str]:
    mac = hmac.new(secret.encode(), body + b":" + at.encode(), hashlib.sha256).digest()
    return {
        "tosspayments-webhook-transmission-time": at,
        "tosspayments-webhook-signature": "v1:" + base64.b64encode(mac).decode(),
    }


async def deliveries(served: RunningSandbox) -> list[dict[str, Any]]:
    """The sandbox's delivery log, once no delivery is still under way."""
    async with httpx.AsyncClient(base_url=served.url) as http, asyncio.timeout(5):
        while True:
            log = list((await http.get("/_sandbox/webhooks")).json())
            if all(entry["state"] not in ("pending", "held") for entry in log):
                return log
            await asyncio.sleep(0.02)


async def test_a_webhook_is_redelivered_with_its_id_until_answered_200(
    served: RunningSandbox, toss: TossPayments, receiver: Receiver
) -> None:
    receiver.failures = 2
    await paid(served, toss, "order-wh-2", 3_000)
    await receiver.wait_for(3)
    ids = {headers["tosspayments-webhook-transmission-id"] for _, headers in receiver.received}
    assert len(ids) == 1
    for body, headers in receiver.received:
        toss.verify_webhook(body, headers)  # every attempt is signed afresh
    (report,) = await deliveries(served)
    assert report["state"] == "delivered" and report["answers"] == [503, 503, 200]


async def test_webhook_faults_duplicate_drop_delay_and_reorder(
    served: RunningSandbox, toss: TossPayments, receiver: Receiver
) -> None:
    await served.inject(error="5xx")  # fault plans leave the control API alone
    await configure(served, webhookDuplicate=True)
    await served.clear()
    await paid(served, toss, "order-wh-dup", 1_000)
    await receiver.wait_for(2)
    (first, _), (second, _) = receiver.received
    assert first == second
    assert len({h["tosspayments-webhook-transmission-id"] for _, h in receiver.received}) == 1

    await configure(served, webhookDuplicate=False, webhookDrop=True)
    await paid(served, toss, "order-wh-drop", 1_000)
    await asyncio.sleep(0.3)
    assert len(receiver.received) == 2
    assert (await deliveries(served))[-1]["state"] == "dropped"

    await configure(served, webhookDrop=False, webhookDelaySeconds=0.4)
    started = time.monotonic()
    await paid(served, toss, "order-wh-late", 1_000)
    await receiver.wait_for(3)
    assert time.monotonic() - started >= 0.4

    receiver.received.clear()
    await configure(served, webhookDelaySeconds=0, webhookReorder=True)
    payment = await paid(served, toss, "order-wh-order", 8_000)
    await toss.cancel(payment.payment_key, 8_000, "취소", idempotency_key="c-wh")
    await receiver.wait_for(2)
    assert receiver.statuses() == ["CANCELED", "DONE"]  # the later status arrived first


async def test_the_sandboxs_own_requests_need_the_secret_key(served: RunningSandbox) -> None:
    async with httpx.AsyncClient(base_url=served.url) as http:
        bare = await http.get("/v1/payments/orders/order-x")
        no_colon = await http.get(
            "/v1/payments/orders/order-x",
            headers={"Authorization": "Basic " + base64.b64encode(b"key").decode()},
        )
        right = await http.get(
            "/v1/payments/orders/order-x", headers={"Authorization": basic_auth(SECRET_KEY)}
        )
    assert (bare.status_code, bare.json()["code"]) == (401, "UNAUTHORIZED_KEY")
    assert (no_colon.status_code, no_colon.json()["code"]) == (403, "INCORRECT_BASIC_AUTH_FORMAT")
    assert (right.status_code, right.json()["code"]) == (404, "NOT_FOUND_PAYMENT")


def test_the_wire_format_page_matches_the_sandbox() -> None:
    page = (Path(__file__).parents[2] / "docs" / "upstreams" / "tosspayments.md").read_text()
    cards = dict(re.findall(r"^\| `(\d{4})` \| \d{3} `([A-Z_]+)`", page, re.MULTILINE))
    assert cards == {digits: code for digits, (_, code, _) in DECLINES.items()}
    assert ",".join(SETTLEMENT_COLUMNS) in page
    assert SECRET_KEY in page and WEBHOOK_SECRET in page
    for name in Config.model_fields:
        assert f"| `{name}` |" in page, f"/_sandbox/config field {name} is not documented"
