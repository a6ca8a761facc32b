"""A payments world for end-to-end tests: the hub over HTTP, the tax system's and the
gateway's sandboxes over HTTP, a supervisor, and terminals that sign in with private_key_jwt
as a phone would."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc.jwk import ECKey

from adapters import registry
from adapters.sandbox.server import RunningSandbox, running
from hub.core import db
from hub.core.servers import Servers
from hub.core.settings import Settings
from resolvers.payments.settings import PaymentsSettings
from schema.payments import flow, upstreams
from schema.payments.upstreams import WEBHOOK_PATH
from tests.conftest import local_settings
from tests.oauth import Hub

PAYMENT_FIELDS = """
  id orderId status amount baseAmount lateFee refundedAmount epayNo districtCode payerName
  failureCode terminalId
  receipt { number approvalNo cardNumber method amount items { name amount } printPath }
"""


@contextmanager
def adapter_environment(*sandboxes: RunningSandbox, timeout_seconds: float = 1.0) -> Iterator[None]:
    """IEUM_<ADAPTER>_* pointing each sandbox's adapter at it, for the block; a short
    time budget by default, so lost answers are found out fast."""
    values: dict[str, str] = {}
    for sandbox in sandboxes:
        adapter = next(a for a in registry.load_all().values() if a.sandbox is sandbox.sandbox)
        for name, value in sandbox.settings().items():
            values[adapter.env_prefix + name.upper()] = str(value)
        values[adapter.env_prefix + "TIMEOUT_SECONDS"] = str(timeout_seconds)
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass
class Terminal:
    client_id: str
    key: ECKey
    token: str


@dataclass
class World:
    url: str
    pool: asyncpg.Pool
    tax: RunningSandbox
    gateway: RunningSandbox
    settings: Settings
    servers: Servers
    supervisor: str = ""
    clients: Hub = field(init=False)

    def __post_init__(self) -> None:
        self.clients = Hub(self.url, self.pool)

    async def gql(
        self, token: str | None, query: str, variables: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as http:
            response = await http.post(
                "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
            )
        return dict(response.json())

    async def terminal(self, district: str = "11110", daily_limit: int = 10_000_000) -> Terminal:
        """A phone enrolled by the supervisor through GraphQL, signed in with its key."""
        key = ECKey.generate_key("P-256", parameters={"kid": uuid.uuid4().hex, "alg": "ES256"})
        enrolled = await self.gql(
            self.supervisor,
            """mutation($input: EnrollTerminalInput!) { enrollTerminal(input: $input) { id } }""",
            {
                "input": {
                    "districtCode": district,
                    "department": "세무과",
                    "official": "김공무",
                    "dailyLimit": daily_limit,
                    "jwks": {"keys": [key.as_dict(private=False)]},
                }
            },
        )
        client_id = enrolled["data"]["enrollTerminal"]["id"]
        return Terminal(client_id, key, await self.sign_in(client_id, key))

    async def sign_in(self, client_id: str, key: ECKey) -> str:
        token_url = f"{self.url}/oauth/token"

        def fetch() -> str:
            with OAuth2Session(
                client_id,
                key,
                token_endpoint_auth_method=PrivateKeyJWT(token_url, alg="ES256"),
            ) as session:
                token = session.fetch_token(token_url, grant_type="client_credentials")
            return str(token["access_token"])

        return await asyncio.to_thread(fetch)

    async def bills(self, count: int = 1, **fields: Any) -> list[str]:
        async with httpx.AsyncClient(base_url=self.tax.url) as http:
            response = await http.post(
                "/_sandbox/bills", json={"bills": [dict(fields) for _ in range(count)]}
            )
            response.raise_for_status()
        return list(response.json()["epay_nos"])

    async def tax_records(self, epay_no: str) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.tax.url) as http:
            response = await http.get("/_sandbox/receipts", params={"epay_no": epay_no})
        return dict(response.json())

    async def card_present(self, order_id: str, amount: int, card: str | None = None) -> str:
        """What the SoftPOS SDK does on the phone: read the card, open the gateway session."""
        body: dict[str, Any] = {"orderId": order_id, "amount": amount, "orderName": "지방세"}
        if card:
            body["cardNumber"] = card
        async with httpx.AsyncClient(base_url=self.gateway.url) as http:
            response = await http.post(
                "/v1/sandbox/card-present", json=body, headers=self.gateway_auth()
            )
            response.raise_for_status()
        return str(response.json()["paymentKey"])

    def gateway_auth(self) -> dict[str, str]:
        secret = self.gateway.settings()["secret_key"]
        return {"Authorization": httpx.BasicAuth(secret, "")._auth_header}

    async def gateway_config(self, **fields: Any) -> None:
        """Set the gateway sandbox's behaviour (webhookDrop, webhookDuplicate …)."""
        async with httpx.AsyncClient(base_url=self.gateway.url) as http:
            (await http.post("/_sandbox/config", json=fields)).raise_for_status()

    async def gateway_payment(self, order_id: str) -> dict[str, Any] | None:
        async with httpx.AsyncClient(base_url=self.gateway.url) as http:
            response = await http.get(
                f"/v1/payments/orders/{order_id}", headers=self.gateway_auth()
            )
        return dict(response.json()) if response.status_code == 200 else None

    async def collect(self, token: str, epay_no: str, key: str | None = None) -> dict[str, Any]:
        return await self.gql(
            token,
            f"""mutation($e: String!, $k: String!) {{
                 collectBill(epayNo: $e, idempotencyKey: $k) {{ {PAYMENT_FIELDS} }} }}""",
            {"e": epay_no, "k": key or str(uuid.uuid4())},
        )

    async def confirm(
        self, token: str, order_id: str, payment_key: str, amount: int, key: str | None = None
    ) -> dict[str, Any]:
        return await self.gql(
            token,
            f"""mutation($o: String!, $p: String!, $a: Int!, $k: String!) {{
                 confirmPayment(orderId: $o, paymentKey: $p, amount: $a, idempotencyKey: $k)
                 {{ {PAYMENT_FIELDS} }} }}""",
            {"o": order_id, "p": payment_key, "a": amount, "k": key or str(uuid.uuid4())},
        )

    async def pay(self, token: str, epay_no: str, card: str | None = None) -> dict[str, Any]:
        """Collect, read the card, confirm: the whole counter flow; the payment as confirmed
        (or the refusal: the answer with its `errors`)."""
        answer = await self.collect(token, epay_no)
        if answer.get("errors"):
            return answer
        collected = answer["data"]["collectBill"]
        payment_key = await self.card_present(collected["orderId"], collected["amount"], card)
        answer = await self.confirm(token, collected["orderId"], payment_key, collected["amount"])
        return dict((answer.get("data") or {}).get("confirmPayment") or answer)

    @asynccontextmanager
    async def flow(self) -> AsyncIterator[flow.Payments]:
        """The payment flow as the worker runs it (recovery, notices) in this process."""
        section = self.settings.section(PaymentsSettings)
        async with upstreams.shared(section, self.settings.issuer) as shared:
            yield flow.Payments(self.pool, shared, section)


@asynccontextmanager
async def payments_world(
    migrated_url: str, kafka_bootstrap: str, **overrides: Any
) -> AsyncIterator[World]:
    from hub.app import create_app
    from hub.serve import serving

    tax_adapter = registry.get("localtax")
    gateway_adapter = registry.get("tosspayments")
    assert tax_adapter.sandbox is not None and gateway_adapter.sandbox is not None
    async with (
        running(tax_adapter.sandbox) as tax,
        running(gateway_adapter.sandbox) as gateway,
    ):
        with adapter_environment(tax, gateway):
            overrides.setdefault("sandbox", False)
            settings = local_settings(**overrides)
            servers = Servers(migrated_url, kafka_bootstrap)
            app = create_app(settings, servers)
            pool = await db.create_pool(migrated_url, settings)
            try:
                async with serving(app, settings.port) as url:
                    async with httpx.AsyncClient(base_url=gateway.url) as http:
                        await http.post("/_sandbox/config", json={"webhookUrl": url + WEBHOOK_PATH})
                    world = World(url, pool, tax, gateway, settings, servers)
                    world.supervisor = await world.clients.token(
                        "payments:supervise payments:finance"
                    )
                    yield world
            finally:
                await pool.close()
