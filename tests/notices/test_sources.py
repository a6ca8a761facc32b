"""Notices from the hub's own domains, end to end: a citizen pays a bill and is refunded
(payments' events through the broker), a business's pickup is collected by a collector's
scan (waste's collections); the notices reach the apps the citizens chose, at their
webhooks, checked with the verifier apps copy. The payments, notices and sources workers
run beside the hub as `ieum serve` runs them, against the tax system's and the gateway's
sandboxes over HTTP."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest

from resolvers.notices.quiet import KST
from resolvers.waste import registry
from resolvers.waste.tags import issue, keys
from schema.notices.runtime import WORKER as NOTICES
from schema.notices.source_polls import WORKER as SOURCES
from schema.notices.sources import COLLECTIONS_SECONDS
from schema.payments.runtime import WORKER as PAYMENTS
from tests.notices.helpers import App
from tests.notices.helpers import World as Notices
from tests.oauth import REDIRECT, approve, authorize_url, pkce, redirect_params
from tests.payments.helpers import World, payments_world

pytestmark = pytest.mark.db

OPT_IN = "mutation($t: [String!]!) { optInNotices(types: $t) { noticeType } }"
REFUND = """mutation($p: UUID!, $a: Int!, $k: String!) {
  refundPayment(paymentId: $p, amount: $a, reason: "과오납", idempotencyKey: $k) {
    payment { refundedAmount } } }"""


@dataclass
class Sources:
    hub: World  # the hub over HTTP with the tax system's and the gateway's sandboxes
    notices: Notices  # apps with their webhook receivers


@pytest.fixture(scope="module")
async def world(migrated_url: str, kafka_bootstrap: str) -> AsyncIterator[Sources]:
    """The hub with its payments, notices and sources workers, on a payments topic and a
    notices consumer group of this module's own."""
    tag = uuid.uuid4().hex[:8]
    async with payments_world(
        migrated_url,
        kafka_bootstrap,
        events_topic=f"test.payments.{tag}",
        events_group=f"test-notices-{tag}",
        day_starts_hour=0,  # no quiet hours: the notices go whenever the test runs
        day_ends_hour=24,
        first_retry_seconds=0.05,
        longest_retry_seconds=0.2,
    ) as hub:
        notices = Notices(hub.url, hub.pool, hub.settings, hub.clients)
        stop = asyncio.Event()
        workers = [
            asyncio.create_task(worker.run(hub.settings, hub.servers, stop))
            for worker in (PAYMENTS, NOTICES, SOURCES)
        ]
        try:
            async with notices.stack:
                yield Sources(hub, notices)
        finally:
            stop.set()
            await asyncio.gather(*workers)


@dataclass
class Person:
    """A citizen with an account, who signs in to several apps."""

    username: str
    user_id: str = ""

    async def token(self, hub: World, client_id: str, secret: str, scope: str) -> str:
        """The token this citizen gives the app on the consent page (code flow, PKCE)."""
        verifier, challenge = pkce()
        url = authorize_url(hub.url, client_id, challenge, scope=scope)
        code = redirect_params(await approve(hub.url, url, self.username))["code"]
        async with httpx.AsyncClient(base_url=hub.url) as http:
            tokens = await http.post(
                "/oauth/token",
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": REDIRECT,
                    "code_verifier": verifier,
                },
                auth=(client_id, secret),
            )
        token = str(tokens.json()["access_token"])
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        self.user_id = str(claims["sub"])
        return token

    async def app_token(self, hub: World, scope: str) -> str:
        """The token this citizen gives a new app holding `scope`."""
        app = await hub.clients.client(name="시민 앱", scope_names=scope, redirect_uris=[REDIRECT])
        return await self.token(hub, app.client_id, app.client_secret or "", scope)


async def opted_in(world: Sources, app: App, *types: str, district: str | None = None) -> Person:
    """A new citizen who chose `types` in the app (of `district`, for types sent so)."""
    person = Person(await world.hub.clients.citizen())
    token = await person.token(world.hub, app.client_id, app.secret, "notices:receive")
    answer = await world.hub.gql(
        token,
        """mutation($t: [String!]!, $d: String) {
             optInNotices(types: $t, districtCode: $d) { noticeType } }""",
        {"t": list(types), "d": district},
    )
    assert not answer.get("errors"), answer
    return person


async def received(app: App, citizen: str, count: int, seconds: float = 20) -> list[dict[str, Any]]:
    """The first `count` notices the app's receiver accepted for the citizen."""
    async with asyncio.timeout(seconds):
        while len(got := app.receiver.of(citizen)) < count:  # noqa: ASYNC110 (a receiver's list)
            await asyncio.sleep(0.05)
    return got


async def test_a_citizens_payment_and_refunds_reach_the_app_they_chose(world: Sources) -> None:
    hub, app = world.hub, await world.notices.app()
    payer = await opted_in(world, app, "payment_received", "refund_issued")
    pay_token = await payer.app_token(hub, "payments:pay")  # the citizen pays in another app
    [epay_no] = await hub.bills(district_code="26110", payer_name="홍길동")
    paid = await hub.pay(pay_token, epay_no)
    assert paid["status"] == "CONFIRMED", paid

    [payment] = await received(app, payer.user_id, 1)
    assert payment["noticeType"] == "payment_received"
    assert payment["params"]["amount"] == paid["amount"]
    assert payment["params"]["receipt_no"] == paid["receipt"]["number"]
    assert f"{paid['amount']:,}원이 납부되었습니다" in payment["body"]["ko"]

    # Two partial refunds: each notice says what that refund gave back.
    for amount in (1_000, 2_500):
        refunded = await hub.gql(
            hub.supervisor, REFUND, {"p": paid["id"], "a": amount, "k": str(uuid.uuid4())}
        )
        assert not refunded.get("errors"), refunded
    _, first, second = await received(app, payer.user_id, 3)
    assert [first["noticeType"], second["noticeType"]] == ["refund_issued"] * 2
    assert [first["params"]["amount"], second["params"]["amount"]] == [1_000, 2_500]
    assert "2,500원이 환불되었습니다" in second["body"]["ko"]
    assert app.receiver.repeats == 0 and not app.receiver.refused


async def test_payments_nobody_chose_to_hear_of_make_no_delivery(world: Sources) -> None:
    hub, app = world.hub, await world.notices.app()
    listener = await opted_in(world, app, "refund_issued")  # refunds only
    pay_token = await listener.app_token(hub, "payments:pay")
    [own] = await hub.bills(district_code="26110", payer_name="김시민")
    paid = await hub.pay(pay_token, own)
    terminal = await hub.terminal()  # an official's phone: nobody to tell
    [counter] = await hub.bills(district_code="11110")
    assert (await hub.pay(terminal.token, counter))["status"] == "CONFIRMED"
    refunded = await hub.gql(
        hub.supervisor, REFUND, {"p": paid["id"], "a": paid["amount"], "k": str(uuid.uuid4())}
    )
    assert not refunded.get("errors"), refunded

    [refund] = await received(app, listener.user_id, 1)
    assert refund["noticeType"] == "refund_issued"
    assert refund["params"]["amount"] == paid["amount"]
    await world.notices.settled()
    assert len(app.receiver.received) == 1


# Waste: a business's pickup collected by a collector's scan.

BUSINESS = """mutation($i: GeneratorInput!) { registerWasteGenerator(input: $i) { id } }"""
SITE = """mutation($i: SiteInput!, $k: String!) { addWasteSite(input: $i, idempotencyKey: $k) {
  id } }"""
BIN = """mutation($s: UUID!, $k: String!) {
  addWasteBin(siteId: $s, volumeLitres: 120, idempotencyKey: $k) { id } }"""
PICKUP = """mutation($b: UUID!, $d: Date!, $k: String!) {
  requestPickup(binId: $b, day: $d, idempotencyKey: $k) { id payment { orderId amount } } }"""
PAY_PICKUP = """mutation($p: UUID!, $c: String!, $a: Int!, $k: String!) {
  confirmPickupPayment(pickupId: $p, paymentKey: $c, amount: $a, idempotencyKey: $k) {
    status } }"""
SCAN = """mutation($i: ScanInput!) { scanBin(input: $i) { duplicate pickup { id status } } }"""
MYEONGDONG = (37.5636, 126.9834)  # 중구 (11140)


@pytest.fixture(scope="module")
async def collector(world: Sources) -> str:
    """A collector company's phone for 중구, whose tariff the city set; the city's tag
    keys made, as `ieum waste tags-issue` makes them."""
    hub = world.hub
    city = await hub.clients.token("waste:city")
    tariff = {"districtCode": "11140", "basis": "LITRE", "unitPrice": 60}
    await _data(
        hub,
        city,
        """mutation($i: TariffInput!) { setWasteTariff(input: $i) { id } }""",
        i={**tariff, "effectiveFrom": "2025-01-01"},
    )
    company = await hub.clients.client(name="깨끗한중구환경", scope_names="waste:collect")
    await _data(
        hub,
        city,
        """mutation($c: String!) {
             registerCollector(clientId: $c, name: "깨끗한중구환경", districts: ["11140"]) {
               id } }""",
        c=company.client_id,
    )
    for algorithm in (keys.QR, keys.NFC):
        await keys.current(hub.pool, keys.secret(hub.settings), algorithm)
    async with httpx.AsyncClient(base_url=hub.url) as http:
        response = await http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(company.client_id, company.client_secret or ""),
        )
    return str(response.json()["access_token"])


async def _data(hub: World, token: str, query: str, **variables: Any) -> dict[str, Any]:
    answer = await hub.gql(token, query, variables)
    assert not answer.get("errors"), answer
    return dict(answer["data"])


def business_no() -> str:
    """A business registration number its checksum accepts."""
    while not registry.valid_business_no(number := f"{random.randrange(10**10):010d}"):
        pass
    return f"{number[:3]}-{number[3:5]}-{number[5:]}"


async def paid_bin(hub: World, owner: Person, name: str) -> tuple[str, str]:
    """A business the owner registers in a business app, with a site in 중구 and a bin
    whose pickup today the owner paid: (the bin's QR label, the pickup's id)."""
    token = await owner.app_token(hub, "waste:business payments:pay")
    business = await _data(
        hub,
        token,
        BUSINESS,
        i={"businessNo": business_no(), "name": name, "representative": "김이음",
           "phone": "02-1234-5678"},
    )  # fmt: skip
    site = await _data(
        hub,
        token,
        SITE,
        i={"generatorId": business["registerWasteGenerator"]["id"], "name": "명동점",
           "address": "서울특별시 중구 명동길 14", "lat": MYEONGDONG[0], "lng": MYEONGDONG[1],
           "districtCode": "11140"},
        k=str(uuid.uuid4()),
    )  # fmt: skip
    made = await _data(hub, token, BIN, s=site["addWasteSite"]["id"], k=str(uuid.uuid4()))
    bin_id = made["addWasteBin"]["id"]
    today = datetime.now(KST).date().isoformat()
    pickup = (await _data(hub, token, PICKUP, b=bin_id, d=today, k=str(uuid.uuid4())))[
        "requestPickup"
    ]
    payment = pickup["payment"]
    card = await hub.card_present(payment["orderId"], payment["amount"])
    await _data(
        hub, token, PAY_PICKUP, p=pickup["id"], c=card, a=payment["amount"], k=str(uuid.uuid4())
    )
    [bin_row] = await issue.bins(hub.pool, [uuid.UUID(bin_id)])
    issued = await issue.issue(hub.pool, keys.secret(hub.settings), [bin_row])
    return issued.labels[0].text, pickup["id"]


def scan_of(label: str) -> dict[str, Any]:
    return {
        "scanId": str(uuid.uuid4()),
        "tag": label,
        "scannedAt": datetime.now(KST).isoformat(timespec="seconds"),
        "lat": MYEONGDONG[0],
        "lng": MYEONGDONG[1] + 0.0002,
        "weightKg": 31.5,
    }


async def test_a_pickup_collected_is_told_once_to_the_owner_who_chose_it(
    world: Sources, collector: str
) -> None:
    hub, app = world.hub, await world.notices.app()
    owner = await opted_in(world, app, "pickup_collected")
    label, pickup = await paid_bin(hub, owner, "이음식당")
    other = Person(await hub.clients.citizen())  # runs a business, chose no notice
    other_label, _ = await paid_bin(hub, other, "저쪽식당")

    scan = scan_of(label)
    collected = (await _data(hub, collector, SCAN, i=scan))["scanBin"]
    assert collected["pickup"] == {"id": pickup, "status": "COLLECTED"}
    await _data(hub, collector, SCAN, i=scan_of(other_label))
    [notice] = await received(app, owner.user_id, 1)
    assert notice["noticeType"] == "pickup_collected"
    at = datetime.fromisoformat(scan["scannedAt"])
    assert notice["params"] == {"site": "이음식당 명동점", "collected_at": f"{at:%Y-%m-%d %H:%M}"}
    assert notice["body"]["ko"] == (
        f"이음식당 명동점의 음식물 쓰레기가 {at:%Y-%m-%d %H:%M}에 수거되었습니다."
    )

    # The phone uploads the scan again (it was offline): stored once, told once.
    again = (await _data(hub, collector, SCAN, i=scan))["scanBin"]
    assert again["duplicate"]
    await asyncio.sleep(2 * COLLECTIONS_SECONDS + 0.5)  # two more looks
    await world.notices.settled()
    assert [n["data"]["noticeType"] for n in app.receiver.received] == ["pickup_collected"]
    assert app.receiver.repeats == 0
