"""Every example query in the docs and README returns exactly the response shown; the
payments guide's run as one session, where ids and times differ from run to run."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from joserfc.jwk import ECKey

from auth.scopes import CATALOG
from resolvers.payments import errors as payment_errors
from resolvers.payments import scopes as payment_scopes
from resolvers.payments.store import KST
from resolvers.sensors.catalog import metrics
from tests.oauth import REDIRECT, Hub, code_for
from tests.payments.helpers import World, payments_world

pytestmark = pytest.mark.db

ROOT = Path(__file__).parents[1]
PAYMENTS_GUIDE = ROOT / "docs" / "payments.md"  # a terminal's session: test_payments_guide
DOCUMENTS = [
    ROOT / "README.md",
    *sorted(path for path in (ROOT / "docs").glob("*.md") if path != PAYMENTS_GUIDE),
]
# A ```graphql block, and the ```json block right after it if that is its response.
EXAMPLE = re.compile(
    r"```graphql\n(?P<query>(?:(?!```).)*)```(?:\s*```json\n(?P<response>(?:(?!```).)*)```)?",
    re.DOTALL,
)


def examples() -> list[pytest.ParameterSet]:
    return [
        pytest.param(match["query"], match["response"], id=f"{document.name}#{index + 1}")
        for document in DOCUMENTS
        for index, match in enumerate(EXAMPLE.finditer(document.read_text()))
        if not match["query"].lstrip().startswith("subscription")  # WebSocket only
    ]


@pytest.fixture(scope="module")
async def every_scope(auth_hub: Hub) -> str:
    """A token that may read everything, so gated examples run too."""
    return await auth_hub.token(list(CATALOG))


def test_the_docs_have_examples() -> None:
    assert len(examples()) >= 5


@pytest.mark.parametrize(("query", "response"), examples())
async def test_example(
    client: httpx.AsyncClient, every_scope: str, query: str, response: str | None
) -> None:
    headers = {"Authorization": f"Bearer {every_scope}"}
    answer = (await client.post("/graphql", json={"query": query}, headers=headers)).json()
    if response is None:  # no response shown: it must at least succeed
        assert "errors" not in answer, answer
        assert answer["data"]
    else:
        assert answer == json.loads(response)


# The OAuth guide: its shell and Python examples run against a real hub.

AUTH_GUIDE = ROOT / "docs" / "auth.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", AUTH_GUIDE.read_text(), re.DOTALL)


async def run_example(auth_hub: Hub, *command: str) -> str:
    client = await auth_hub.client(scope_names="sensors:read")
    process = await asyncio.create_subprocess_exec(
        *command,
        env=os.environ
        | {
            "IEUM": auth_hub.url,
            "CLIENT_ID": client.client_id,
            "CLIENT_SECRET": client.client_secret or "",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_auth_guide_shell_example(auth_hub: Hub) -> None:
    (script,) = blocks("bash")
    output = await run_example(auth_hub, "bash", "-euo", "pipefail", "-c", script)
    viewer = json.loads(output)["data"]["viewer"]
    assert viewer["scopes"] == ["sensors:read"]


async def test_auth_guide_python_example(auth_hub: Hub) -> None:
    (program,) = blocks("python")
    output = await run_example(auth_hub, sys.executable, "-c", program)
    assert output.strip() == "['sensors:read']"


def test_auth_guide_explains_every_scope() -> None:
    text = AUTH_GUIDE.read_text()
    for scope, info in CATALOG.items():
        assert f"| `{scope}` | {info.ko} | {info.en} |" in text


def test_sensor_guide_lists_every_metric() -> None:
    text = (ROOT / "docs" / "sensors.md").read_text()
    for metric in metrics():
        assert f"| {metric.id} | `{metric.name}` | {metric.unit} |" in text


# The payments guide: its operations run as a terminal, a supervisor, finance staff and a
# citizen's app use them, through the tax system's and the gateway's sandboxes.

# What differs from run to run; every other value shown must be the one answered.
VARYING = frozenset({
    "id", "orderId", "epayNo", "dueDate", "number", "approvalNo", "paidAt", "printPath",
    "message", "day",
})  # fmt: skip


def guide_operations() -> dict[str, tuple[str, Any]]:
    """The payments guide's operations by name, each with the response it shows (or None)."""
    found: dict[str, tuple[str, Any]] = {}
    for match in EXAMPLE.finditer(PAYMENTS_GUIDE.read_text()):
        name = re.match(r"\s*(?:query|mutation|subscription) (\w+)", match["query"])
        assert name and name[1] not in found, f"name each example once: {match['query']}"
        shown = json.loads(match["response"]) if match["response"] else None
        found[name[1]] = (match["query"], shown)
    return found


def like(shown: Any, answer: Any, key: str | None = None) -> bool:
    """`answer` has the shape of `shown` (keys, lengths, nulls) and its values, but for
    the VARYING fields, which need only be of the same type."""
    if isinstance(shown, dict):
        return (
            isinstance(answer, dict)
            and shown.keys() == answer.keys()
            and all(like(value, answer[name], name) for name, value in shown.items())
        )
    if isinstance(shown, list):
        return (
            isinstance(answer, list)
            and len(shown) == len(answer)
            and all(like(s, a, key) for s, a in zip(shown, answer, strict=True))
        )
    if key in VARYING:
        return type(shown) is type(answer)
    return bool(shown == answer)


async def test_payments_guide(migrated_url: str, kafka_bootstrap: str) -> None:
    operations = guide_operations()
    ran: set[str] = set()
    async with payments_world(migrated_url, kafka_bootstrap) as world:

        async def run(name: str, token: str, **variables: Any) -> dict[str, Any]:
            query, shown = operations[name]
            answer = await world.gql(token, query, variables)
            assert like(shown, answer) if shown else "errors" not in answer, (name, answer)
            ran.add(name)
            return dict(answer["data"] or {})

        # A supervisor enrolls a phone; the phone signs in with its own key.
        phone = ECKey.generate_key("P-256", parameters={"kid": "phone-1", "alg": "ES256"})
        enrolled = await run(
            "EnrollTerminal",
            world.supervisor,
            input={
                "districtCode": "11110",
                "department": "세무과",
                "official": "김공무",
                "dailyLimit": 3_000_000,
                "jwks": {"keys": [phone.as_dict(private=False)]},
            },
        )
        terminal = await world.sign_in(enrolled["enrollTerminal"]["id"], phone)

        [epay_no] = await world.bills(district_code="11110", payer_name="홍길동")
        [elsewhere] = await world.bills(district_code="11680")
        await run("TaxBill", terminal, epayNo=epay_no)
        collected = (
            await run("CollectBill", terminal, epayNo=epay_no, idempotencyKey=str(uuid.uuid4()))
        )["collectBill"]
        await run("CollectElsewhere", terminal, epayNo=elsewhere, idempotencyKey=str(uuid.uuid4()))
        order_id = collected["orderId"]
        following = await _follow(world, terminal, operations["PaymentStatus"][0], order_id)
        payment_key = await world.card_present(order_id, collected["amount"])  # the SDK
        confirmed = await run(
            "ConfirmPayment",
            terminal,
            orderId=order_id,
            paymentKey=payment_key,
            amount=collected["amount"],
            idempotencyKey=str(uuid.uuid4()),
        )
        statuses = await following
        assert statuses[0] == "REQUESTED" and statuses[-1] == "CONFIRMED", statuses
        ran.add("PaymentStatus")
        receipt = confirmed["confirmPayment"]["receipt"]
        async with httpx.AsyncClient(base_url=world.url) as http:
            page = await http.get(
                receipt["printPath"], headers={"Authorization": f"Bearer {terminal}"}
            )
        assert page.status_code == 200 and receipt["number"] in page.text
        await run("Payment", terminal, orderId=order_id)

        # A supervisor refunds part; finance staff read the ledger and reconcile the day
        # against a settlement file that shows another amount for the payment.
        await run(
            "RefundPayment",
            world.supervisor,
            paymentId=collected["id"],
            idempotencyKey=str(uuid.uuid4()),
        )
        finance = await world.clients.token("payments:finance")
        await run("LedgerBalances", finance)
        await world.gateway_config(settlementAlterAmounts={order_id: 39_000})
        day = datetime.fromisoformat(receipt["paidAt"]).astimezone(KST).date()
        await run("Reconcile", finance, day=day.isoformat())

        # A citizen pays a bill of any district from a private app, with the same operations.
        citizen = await _citizen_token(world)
        [own] = await world.bills(district_code="26110", payer_name="홍길동")
        opened = await run("CollectBill", citizen, epayNo=own, idempotencyKey=str(uuid.uuid4()))
        online = opened["collectBill"]
        await run(
            "ConfirmPayment",
            citizen,
            orderId=online["orderId"],
            paymentKey=await world.card_present(online["orderId"], online["amount"]),
            amount=online["amount"],
            idempotencyKey=str(uuid.uuid4()),
        )
        mine = await world.gql(citizen, operations["Payment"][0], {"orderId": online["orderId"]})
        assert mine["data"]["payment"]["channel"] == "online"
    assert ran == set(operations)


async def _follow(
    world: World, token: str, subscription: str, order_id: str
) -> asyncio.Task[list[str]]:
    """The statuses `subscription` delivers over WebSocket until it completes; the first
    (the status now) is received before this returns."""
    url = world.url.replace("http://", "ws://") + "/graphql"
    ws = await websockets.connect(
        url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
    )
    init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
    await ws.send(json.dumps(init))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    payload = {"query": subscription, "variables": {"orderId": order_id}}
    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))

    async def receive() -> dict[str, Any]:
        return dict(json.loads(await asyncio.wait_for(ws.recv(), 10)))

    first = await receive()

    async def statuses() -> list[str]:
        seen, message = [], first
        async with ws:
            while message["type"] == "next":
                seen.append(message["payload"]["data"]["paymentStatus"]["status"])
                message = await receive()
        assert message["type"] == "complete", message
        return seen

    return asyncio.create_task(statuses())


async def _citizen_token(world: World) -> str:
    """A citizen's token for a private app holding payments:pay (code flow with PKCE)."""
    app = await world.clients.client(
        name="납부 앱", scope_names="payments:pay", redirect_uris=[REDIRECT], public=True
    )
    code, verifier = await code_for(world.clients, app.client_id, scope="payments:pay")
    async with httpx.AsyncClient(base_url=world.url) as http:
        response = await http.post(
            "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
                "code_verifier": verifier,
                "client_id": app.client_id,
            },
        )
    return str(response.json()["access_token"])


def test_payments_guide_explains_every_error_code_and_scope() -> None:
    text = PAYMENTS_GUIDE.read_text()
    for error in vars(payment_errors).values():
        if isinstance(error, type) and error.__module__ == payment_errors.__name__:
            assert f"| `{error.code}` |" in text, error.code
    for scope in payment_scopes.ALL:
        assert f"| `{scope.name}` |" in text, scope.name
