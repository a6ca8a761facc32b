"""Every example query in the docs and README returns exactly the response shown; the
payments and waste guides' run as sessions, where ids and times differ from run to run."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from graphql import parse, validate
from joserfc.jwk import ECKey

from auth.scopes import CATALOG
from hub import domains
from hub.core.errors import IeumError
from resolvers.mobility import errors as mobility_errors
from resolvers.mobility import scopes as mobility_scopes
from resolvers.payments import errors as payment_errors
from resolvers.payments import scopes as payment_scopes
from resolvers.payments.store import KST
from resolvers.sensors.catalog import metrics
from resolvers.waste import errors as waste_errors
from resolvers.waste import pickups
from resolvers.waste import scopes as waste_scopes
from resolvers.waste.tags import sun
from schema.builder import build_schema
from schema.waste import domain as waste_domain
from tests.mobility.helpers import BUSAN_HAEUNDAE, SEOUL_CITY_HALL, MobilityWorld, mobility_world
from tests.oauth import REDIRECT, Hub, code_for
from tests.payments.helpers import World

pytestmark = pytest.mark.db

ROOT = Path(__file__).parents[1]
PAYMENTS_GUIDE = ROOT / "docs" / "payments.md"  # a terminal's session: test_payments_guide
WASTE_GUIDE = ROOT / "docs" / "waste.md"  # a business's, a collector's: test_waste_guide
MOBILITY_GUIDE = ROOT / "docs" / "mobility.md"  # a navigation app's: test_mobility_guide
NOTICES_GUIDE = ROOT / "docs" / "notices.md"  # a citizen's app, a city's: test_notices_guide
SESSIONS = (PAYMENTS_GUIDE, WASTE_GUIDE, MOBILITY_GUIDE, NOTICES_GUIDE)
DOCUMENTS = [
    ROOT / "README.md",
    *sorted(path for path in (ROOT / "docs").glob("*.md") if path not in SESSIONS),
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


def test_subscription_examples_fit_the_schema() -> None:
    """Subscriptions run over WebSocket in each domain's own tests; here every one the
    docs show must at least be valid against the hub's schema."""
    schema = build_schema(domains.by_names(None))._schema
    shown = [
        match["query"]
        for document in DOCUMENTS
        for match in EXAMPLE.finditer(document.read_text())
        if match["query"].lstrip().startswith("subscription")
    ]
    assert shown
    for query in shown:
        assert validate(schema, parse(query)) == [], query


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
    "message", "day", "cursor", "endCursor",
})  # fmt: skip


@pytest.fixture(scope="module")
async def mobility_guide_world(
    migrated_url: str, kafka_bootstrap: str
) -> AsyncIterator[MobilityWorld]:
    """The hub with every sandbox the guides' sessions run against (tax system, gateway,
    timetable, operator, local routes). One for all: a process's adapters are built once
    and shared by every hub in it while any runs (adapters.connections.shared), and this
    module's other hub outlives a session's, so a second world's sandboxes would not be
    called."""
    async with mobility_world(migrated_url, kafka_bootstrap) as world:
        yield world


@pytest.fixture(scope="module")
def guide_world(mobility_guide_world: MobilityWorld) -> World:
    return mobility_guide_world.hub


def guide_operations(guide: Path) -> dict[str, tuple[str, Any]]:
    """A guide's operations by name, each with the response it shows (or None)."""
    found: dict[str, tuple[str, Any]] = {}
    for match in EXAMPLE.finditer(guide.read_text()):
        name = re.match(r"\s*(?:query|mutation|subscription) (\w+)", match["query"])
        assert name and name[1] not in found, f"name each example once: {match['query']}"
        shown = json.loads(match["response"]) if match["response"] else None
        found[name[1]] = (match["query"], shown)
    return found


def like(
    shown: Any, answer: Any, key: str | None = None, varying: frozenset[str] = VARYING
) -> bool:
    """`answer` has the shape of `shown` (keys, lengths, nulls) and its values, but for
    the `varying` fields, which need only be of the same type."""
    if isinstance(shown, dict):
        return (
            isinstance(answer, dict)
            and shown.keys() == answer.keys()
            and all(like(value, answer[name], name, varying) for name, value in shown.items())
        )
    if isinstance(shown, list):
        return (
            isinstance(answer, list)
            and len(shown) == len(answer)
            and all(like(s, a, key, varying) for s, a in zip(shown, answer, strict=True))
        )
    if key in varying:
        return type(shown) is type(answer)
    return bool(shown == answer)


async def test_payments_guide(guide_world: World) -> None:
    operations = guide_operations(PAYMENTS_GUIDE)
    ran: set[str] = set()
    world = guide_world

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
        page = await http.get(receipt["printPath"], headers={"Authorization": f"Bearer {terminal}"})
    assert page.status_code == 200 and receipt["number"] in page.text
    await run("Payment", terminal, orderId=order_id)
    await run("Payments", terminal)

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
        if (
            isinstance(error, type)
            and issubclass(error, IeumError)
            and error.__module__ == payment_errors.__name__
        ):
            assert f"| `{error.code}` |" in text, error.code
    for scope in payment_scopes.ALL:
        assert f"| `{scope.name}` |" in text, scope.name


# The waste guide: a business's app, city staff, a collector company's phone and anyone
# reading open data, through the gateway's sandbox, the RFID system's and the commands.

WASTE_VARYING = frozenset({
    "id", "siteId", "pickupId", "scanId", "orderId", "collectorId", "day", "pickupDay",
    "paidAt", "collectedAt", "start", "number", "printPath", "cursor", "endCursor", "binId",
    "pickupOrderId",
})  # fmt: skip
DEPOT = {"lat": 37.5600, "lng": 126.9980}  # where the collector's truck starts


async def test_waste_guide(guide_world: World, tmp_path: Path) -> None:
    operations = guide_operations(WASTE_GUIDE)
    ran: set[str] = set()
    world = guide_world

    async def run(name: str, token: str | None, **variables: Any) -> dict[str, Any]:
        query, shown = operations[name]
        answer = await world.gql(token, query, variables)
        ok = like(shown, answer, varying=WASTE_VARYING) if shown else "errors" not in answer
        assert ok, (name, answer)
        ran.add(name)
        return dict(answer["data"] or {})

    # A restaurant owner signs in to the business app and registers the business.
    business = await _business_token(world)
    generator = await run(
        "RegisterWasteGenerator",
        business,
        input={
            "businessNo": "220-88-13577",
            "name": "이음식당",
            "representative": "김이음",
            "phone": "02-1234-5678",
        },
    )
    site = await run(
        "AddWasteSite",
        business,
        input={
            "generatorId": generator["registerWasteGenerator"]["id"],
            "name": "명동점",
            "address": "서울특별시 중구 명동길 14",
            "lat": 37.5636,
            "lng": 126.9834,
            "districtCode": "11140",
        },
        idempotencyKey=str(uuid.uuid4()),
    )
    site_id = site["addWasteSite"]["id"]
    bin_id = (await run("AddWasteBin", business, siteId=site_id, idempotencyKey=str(uuid.uuid4())))[
        "addWasteBin"
    ]["id"]

    # City staff set 중구's tariff, allow a collector company and tag the bin.
    city = await world.clients.token("waste:city")
    tariff = {
        "districtCode": "11140",
        "basis": "LITRE",
        "unitPrice": 60,
        "effectiveFrom": "2025-01-01",
    }
    await run("SetWasteTariff", city, input=tariff)
    company = await world.clients.client(name="깨끗한중구환경", scope_names="waste:collect")
    await run("RegisterCollector", city, clientId=company.client_id)
    uid = "04A2C4E6F81234"
    await _ieum_waste(
        world,
        *("tags-issue", "--site", site_id, "--out", str(tmp_path), "--nfc"),
        *("--uid", f"{bin_id}={uid}"),
    )
    with (tmp_path / "labels.csv").open(encoding="utf-8") as file:
        [label] = list(csv.DictReader(file))
    nfc = json.loads((tmp_path / "nfc.json").read_text())
    [tag] = nfc["tags"]
    assert (label["bin_id"], tag["bin_id"], tag["uid"]) == (bin_id, bin_id, uid)

    # The business asks what a pickup costs, requests one today and pays by card.
    today = pickups.korea_today()
    await run("WasteQuote", business, binId=bin_id, day=today.isoformat())
    pickup, order_id = await _paid_pickup(world, run, business, bin_id, today)
    await run("PickupReceipt", business, orderId=order_id)
    await run("WastePickups", business)

    # The collector's phone signs in, gets the day's route and taps the bin's NFC tag,
    # while city staff follow the district's collections live.
    collector = await _client_token(world, company.client_id, company.client_secret)
    route = await run("WasteRoute", collector, start=DEPOT)
    assert route["wasteRoute"]["stops"][0]["pickups"][0]["id"] == pickup
    following = await _first_collection(world, city, operations["WasteCollections"][0])
    picc_data, cmac = sun.tap(
        bytes.fromhex(tag["keys"][1]), bytes.fromhex(tag["keys"][2]), bytes.fromhex(uid), 1
    )
    tap = nfc["sdm"]["url"].split("?")[0] + f"?picc_data={picc_data}&cmac={cmac}"
    scan = {
        "scanId": str(uuid.uuid4()),
        "tag": tap,
        "scannedAt": datetime.now(KST).isoformat(timespec="seconds"),
        "lat": 37.5637,
        "lng": 126.9836,
        "weightKg": 31.5,
    }
    scanned = (await run("ScanBin", collector, input=scan))["scanBin"]
    assert scanned["pickup"]["id"] == pickup
    collection = await following
    assert like(operations["WasteCollections"][1], collection, varying=WASTE_VARYING)
    assert collection["data"]["wasteCollections"]["scanId"] == scan["scanId"]
    ran.add("WasteCollections")

    # A label altered by one character is refused; an offline upload sends the tap
    # again (counted once) with the altered label (refused in its place).
    text = label["qr_text"]
    at = len(text) - 20  # a character of the signature
    altered = text[:at] + ("A" if text[at] != "A" else "B") + text[at + 1 :]
    forged = scan | {"scanId": str(uuid.uuid4()), "tag": altered}
    await run("ScanAltered", collector, input=forged)
    await run("UploadScans", collector, scans=[scan, forged])

    # City staff read the day's figures; anyone reads a district's days, imported RFID
    # volumes included.
    await run("WasteVolumes", city, **{"from": today.isoformat(), "to": today.isoformat()})
    await _ieum_waste(world, "rfid-import", "--sandbox", "--month", "2024-02")
    await run("DistrictWasteVolumes", None, **{"from": "2024-02-01", "to": "2024-02-02"})
    days = await world.gql(
        city,  # one business's day: open data withholds it (IEUM_WASTE_OPEN_MIN_BUSINESSES)
        operations["DistrictWasteVolumes"][0],
        {"from": today.isoformat(), "to": today.isoformat()},
    )
    [day] = days["data"]["district"]["wasteVolumes"]
    assert (day["collections"], day["litres"], day["kilograms"]) == (1, 120, 31.5)

    # The business pays tomorrow's pickup, then cancels it: the fee is refunded.
    tomorrow, _ = await _paid_pickup(world, run, business, bin_id, today + timedelta(days=1))
    await run("CancelPickup", business, pickupId=tomorrow)

    # A second bin; both ordered for the day after with one payment; one pickup cancelled
    # alone (its share refunded), then the order (the rest).
    added = await run("AddWasteBin", business, siteId=site_id, idempotencyKey=str(uuid.uuid4()))
    bins, later = [bin_id, added["addWasteBin"]["id"]], (today + timedelta(days=2)).isoformat()
    await run("WasteOrderQuote", business, binIds=bins, day=later)
    ordered = (
        await run(
            "RequestPickupOrder", business, binIds=bins, day=later, idempotencyKey=str(uuid.uuid4())
        )
    )["requestPickupOrder"]
    payment = ordered["payment"]
    await run(
        "ConfirmPickupOrderPayment",
        business,
        pickupOrderId=ordered["id"],
        paymentKey=await world.card_present(payment["orderId"], payment["amount"]),
        amount=payment["amount"],
        idempotencyKey=str(uuid.uuid4()),
    )
    cancel_one = operations["CancelPickup"][0].replace("임시 휴업", "한 통만 내놓음")
    alone = await world.gql(business, cancel_one, {"pickupId": ordered["pickups"][0]["id"]})
    assert alone["data"]["cancelPickup"]["payment"] == {
        "status": "PARTIALLY_REFUNDED",
        "amount": 14_400,
        "refundedAmount": 7_200,
    }
    await run("CancelPickupOrder", business, pickupOrderId=ordered["id"])
    assert ran == set(operations)


async def _business_token(world: World) -> str:
    """A restaurant owner's token for the business app (code flow, the owner's consent)."""
    scope = "waste:business payments:pay"
    app = await world.clients.client(name="사장님 앱", scope_names=scope, redirect_uris=[REDIRECT])
    code, verifier = await code_for(world.clients, app.client_id, scope=scope)
    async with httpx.AsyncClient(base_url=world.url) as http:
        response = await http.post(
            "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
                "code_verifier": verifier,
            },
            auth=(app.client_id, app.client_secret or ""),
        )
    return str(response.json()["access_token"])


async def _client_token(world: World, client_id: str, secret: str | None) -> str:
    async with httpx.AsyncClient(base_url=world.url) as http:
        response = await http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, secret or ""),
        )
    return str(response.json()["access_token"])


async def _paid_pickup(
    world: World, run: Callable[..., Awaitable[dict[str, Any]]], token: str, bin_id: str, day: date
) -> tuple[str, str]:
    """requestPickup, the card read by the gateway's SDK, confirmPickupPayment: the
    pickup's id and its payment's order id."""
    requested = (
        await run(
            "RequestPickup",
            token,
            binId=bin_id,
            day=day.isoformat(),
            idempotencyKey=str(uuid.uuid4()),
        )
    )["requestPickup"]
    payment = requested["payment"]
    await run(
        "ConfirmPickupPayment",
        token,
        pickupId=requested["id"],
        paymentKey=await world.card_present(payment["orderId"], payment["amount"]),
        amount=payment["amount"],
        idempotencyKey=str(uuid.uuid4()),
    )
    return str(requested["id"]), str(payment["orderId"])


async def _ieum_waste(world: World, name: str, *argv: str) -> None:
    """`ieum waste NAME ARGV…` as an operator runs it beside the hub (in a thread: it runs
    its own event loop)."""
    (command,) = [c for c in waste_domain.commands if c.name == name]
    parser = argparse.ArgumentParser()
    command.arguments(parser)
    args = parser.parse_args(argv)
    assert await asyncio.to_thread(command.run, world.settings, world.servers, args) == 0


async def _first_collection(
    world: World, token: str, subscription: str
) -> asyncio.Task[dict[str, Any]]:
    """The first value `subscription` delivers for 중구 over WebSocket; subscribed before
    this returns."""
    url = world.url.replace("http://", "ws://") + "/graphql"
    ws = await websockets.connect(
        url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
    )
    init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
    await ws.send(json.dumps(init))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    payload = {"query": subscription, "variables": {"districtCode": "11140"}}
    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
    await asyncio.sleep(0.5)  # the subscription starts listening

    async def first() -> dict[str, Any]:
        async with ws:
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert message["type"] == "next", message
        return dict(message["payload"])

    return asyncio.create_task(first())


def test_waste_guide_checks_every_response_it_shows() -> None:
    """A response shown after prose rather than right after its operation goes unchecked."""
    text = WASTE_GUIDE.read_text()
    shown = [response for _, response in guide_operations(WASTE_GUIDE).values() if response]
    assert len(shown) == len(re.findall(r'```json\n\{\s*"data"', text))


def test_waste_guide_explains_every_error_code_and_scope() -> None:
    text = WASTE_GUIDE.read_text()
    for error in vars(waste_errors).values():
        if (
            isinstance(error, type)
            and issubclass(error, IeumError)
            and error.__module__ == waste_errors.__name__
        ):
            assert f"| `{error.code}` |" in text, error.code
    for scope in waste_scopes.ALL:
        assert f"| `{scope.name}` |" in text, scope.name


MOBILITY_VARYING = frozenset({
    "leaveAt", "arriveAt", "minutes", "fare", "transfers", "walkMeters", "rides", "line",
    "mode", "trainNo", "grade", "runDate", "departsAt", "arrivesAt", "adultFare",
    "generalLeft", "specialLeft", "generalFare", "specialFare", "id", "pnr", "car", "seat",
    "amount", "payBy", "orderId", "saleNo", "name", "code", "cancelFee", "refundedAmount",
    "endCursor",
})  # fmt: skip


async def test_mobility_guide(mobility_guide_world: MobilityWorld) -> None:
    operations = guide_operations(MOBILITY_GUIDE)
    world = mobility_guide_world
    ran: set[str] = set()

    async def run(name: str, token: str, **variables: Any) -> dict[str, Any]:
        query, shown = operations[name]
        answer = await world.hub.gql(token, query, variables)
        ok = like(shown, answer, varying=MOBILITY_VARYING) if shown else "errors" not in answer
        assert ok, (name, answer)
        ran.add(name)
        return dict(answer["data"] or {})

    _, citizen = await world.citizen("mobility:plan mobility:book sensors:read")
    tomorrow = datetime.now(KST).date() + timedelta(days=1)
    after = datetime(tomorrow.year, tomorrow.month, tomorrow.day, 8, tzinfo=KST)
    plan = await run(
        "Journeys",
        citizen,
        **{"from": SEOUL_CITY_HALL, "to": BUSAN_HAEUNDAE},
        after=after.isoformat(),
    )
    await run(
        "JourneyLegs",
        citizen,
        **{"from": SEOUL_CITY_HALL, "to": BUSAN_HAEUNDAE},
        after=after.isoformat(),
    )
    [itinerary] = plan["journeys"]["itineraries"]
    train = itinerary["train"]
    assert (train["from"]["name"], train["to"]["name"]) == ("서울", "부산")
    held = await run(
        "HoldSeats",
        citizen,
        input={
            "trainNo": train["trainNo"],
            "runDate": train["runDate"],
            "from": train["from"]["code"],
            "to": train["to"]["code"],
            "passengers": 1,
        },
        idempotencyKey=str(uuid.uuid4()),
    )
    booking = held["holdSeats"]
    payment_key = await world.hub.card_present(booking["orderId"], booking["amount"])
    paid = await run(
        "PayBooking",
        citizen,
        bookingId=booking["id"],
        paymentKey=payment_key,
        idempotencyKey=str(uuid.uuid4()),
    )
    assert paid["payBooking"]["amount"] == train["adultFare"]
    await run("Bookings", citizen)
    cancelled = await run("CancelBooking", citizen, bookingId=booking["id"])
    done = cancelled["cancelBooking"]
    assert done["cancelFee"] + done["refundedAmount"] == booking["amount"]
    assert ran == set(operations)


def test_mobility_guide_explains_every_error_code_and_scope() -> None:
    text = MOBILITY_GUIDE.read_text()
    for error in vars(mobility_errors).values():
        if (
            isinstance(error, type)
            and issubclass(error, IeumError)
            and error.__module__ == mobility_errors.__name__
        ):
            assert f"| `{error.code}` |" in text, error.code
    for scope in mobility_scopes.ALL:
        assert f"| `{scope.name}` |" in text, scope.name


# The notices guide: a citizen's app, the app itself, a city system and a city operator.
# The guides' database behind a hub of its own with the notices worker beside it: all day
# long (no quiet hours, so the session's notices go whenever it runs) and with a linking
# key.

NOTICES_VARYING = frozenset({
    "chosenAt", "withdrawnAt", "url", "secret", "previousValidUntil", "id", "eventId",
    "cursor", "readAt", "noticeId", "citizen", "failedAt", "attempts", "endCursor",
})  # fmt: skip


async def test_notices_guide(guide_world: World) -> None:
    from hub.app import create_app
    from hub.serve import serving
    from resolvers.notices import signing
    from schema.notices.runtime import run_worker
    from tests.conftest import local_settings
    from tests.notices.helpers import App
    from tests.notices.helpers import World as NoticesWorld
    from tests.notices.receiver import receiving

    operations = guide_operations(NOTICES_GUIDE)
    ran: set[str] = set()
    settings = local_settings(
        day_starts_hour=0,
        day_ends_hour=24,
        linking_key="the key the city shares with its agencies",
        first_retry_seconds=0.05,
        longest_retry_seconds=0.2,
    )
    stop = asyncio.Event()
    async with (
        serving(create_app(settings, guide_world.servers), settings.port) as url,
        receiving() as receiver,
    ):
        world = NoticesWorld(url, guide_world.pool, settings, Hub(url, guide_world.pool))
        worker = asyncio.create_task(run_worker(settings, guide_world.servers, stop))

        async def run(name: str, token: str | None, **variables: Any) -> dict[str, Any]:
            query, shown = operations[name]
            answer = await world.gql(token, query, variables)
            ok = like(shown, answer, varying=NOTICES_VARYING) if shown else "errors" not in answer
            assert ok, (name, answer)
            ran.add(name)
            return dict(answer["data"] or {})

        try:
            # Anyone reads the catalogue; a citizen chooses in their app (consent page).
            await run("NoticeTypes", None)
            made = await world.clients.client(
                name="알림 앱",
                scope_names="notices:receive notices:deliver",
                redirect_uris=[REDIRECT],
            )
            secret = made.client_secret or ""
            app_token = await world.client_token(made.client_id, secret, "notices:deliver")
            citizen = await world.citizen(App(made.client_id, secret, app_token, receiver))
            for name in ("OptInNotices", "OptInFineDust", "NoticeChoices", "WithdrawNotices"):
                await run(name, citizen.token)

            # The app registers its webhook; an operator lets the city's system publish.
            hook = await run(
                "RegisterNoticeWebhook", app_token, url=receiver.url, idempotencyKey="k-1"
            )
            receiver.secrets.append(signing.key_of(hook["registerNoticeWebhook"]["secret"]))
            operator = await world.clients.token("notices:operate")
            system = await world.clients.client(
                name="시청 과태료 시스템", scope_names="notices:publish"
            )
            await run("RegisterNoticePublisher", operator, clientId=system.client_id)
            city = await world.client_token(
                system.client_id, system.client_secret or "", "notices:publish"
            )

            # The city publishes a fine: the app hears of it live, at its webhook and in
            # the inbox; the citizen reads it; the city reads how far it got.
            following = await _first_notice(url, citizen.token, operations["NoticeReceived"][0])
            first = await run(
                "PublishNotice", city, citizen=citizen.user_id, agencyNoticeId="seoul-2026-0123"
            )
            notice_id = first["publishNotice"]["id"]
            live = await following
            assert like(operations["NoticeReceived"][1], live, varying=NOTICES_VARYING), live
            ran.add("NoticeReceived")
            await world.settled()
            assert [n["noticeId"] for n in receiver.of(citizen.user_id)] == [notice_id]
            await run("NoticeInbox", citizen.token)
            await run("AcknowledgeNotice", citizen.token, id=notice_id)
            await run("NoticeReports", city, agencyNoticeId="seoul-2026-0123")

            # The app rotates its secret (deliveries carry both signatures meanwhile), then
            # is down for more than a day (its retries aged in the database, as a day of
            # failures leaves them): the next notice is dead-lettered, then redriven.
            rotated = await run("RotateNoticeWebhookSecret", app_token, idempotencyKey="k-2")
            receiver.secrets[:] = [signing.key_of(rotated["rotateNoticeWebhookSecret"]["secret"])]
            receiver.down = True
            second = await run(
                "PublishNotice", city, citizen=citizen.user_id, agencyNoticeId="seoul-2026-0124"
            )
            second_id = second["publishNotice"]["id"]
            await world.pool.execute(
                "UPDATE notice_deliveries SET release_at = now() - interval '27 hours'"
                " WHERE notice_id = $1",
                uuid.UUID(second_id),
            )
            await world.settled()
            await run("NoticeDeadLetters", app_token)
            receiver.down = False
            await run("RedriveNotices", app_token)
            await world.settled()
            got = [n["noticeId"] for n in receiver.of(citizen.user_id)]
            assert got == [notice_id, second_id]

            # The citizen's app passes on the CI its identity check gave.
            await run("LinkNoticeIdentity", citizen.token, ci="A" * 86 + "==")
        finally:
            stop.set()
            await worker
    assert ran == set(operations)


async def _first_notice(url: str, token: str, subscription: str) -> asyncio.Task[dict[str, Any]]:
    """The first value `subscription` delivers over WebSocket; subscribed before this
    returns."""
    ws = await websockets.connect(
        url.replace("http://", "ws://") + "/graphql",
        subprotocols=[websockets.Subprotocol("graphql-transport-ws")],
    )
    init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
    await ws.send(json.dumps(init))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": subscription}}))
    await asyncio.sleep(0.5)  # the subscription starts listening

    async def first() -> dict[str, Any]:
        async with ws:
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert message["type"] == "next", message
        return dict(message["payload"])

    return asyncio.create_task(first())
