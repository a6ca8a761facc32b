"""A mobility world for end-to-end tests: the hub over HTTP with the timetable, booking,
local-route, tax and gateway sandboxes over HTTP, and citizens who consent through the
consent page as in a browser."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from adapters import registry
from adapters.sandbox.faults import FaultPlan
from adapters.sandbox.server import RunningSandbox, running
from tests.oauth import REDIRECT, code_for
from tests.payments.helpers import World, adapter_environment, payments_world

SEOUL_CITY_HALL = {"lat": 37.5663, "lng": 126.9779}
BUSAN_HAEUNDAE = {"lat": 35.1631, "lng": 129.1636}
DAEJEON_CITY_HALL = {"lat": 36.3504, "lng": 127.3845}

BOOKING_FIELDS = """
  id status trainNo grade runDate from { code name } to { code name } departsAt arrivesAt
  seatClass passengers pnr seats { car seat } amount payBy orderId saleNo cancelFee
  refundedAmount failure { code message }
"""


@dataclass
class MobilityWorld:
    hub: World
    timetable: RunningSandbox
    booking: RunningSandbox
    routes: RunningSandbox

    async def citizen(self, scope: str = "mobility:book mobility:plan") -> tuple[str, str]:
        """(app client id, the token a new citizen granted `scope` to that app)."""
        app = await self.hub.clients.client(scope_names=scope, redirect_uris=[REDIRECT])
        return app.client_id, await self.token_for(app.client_id, app.client_secret or "", scope)

    async def token_for(self, client_id: str, secret: str, scope: str) -> str:
        grant, verifier = await code_for(self.hub.clients, client_id, scope=scope)
        async with httpx.AsyncClient(base_url=self.hub.url) as http:
            tokens = await http.post(
                "/oauth/token",
                data={
                    "grant_type": "authorization_code",
                    "code": grant,
                    "redirect_uri": REDIRECT,
                    "code_verifier": verifier,
                },
                auth=(client_id, secret),
            )
        return str(tokens.json()["access_token"])

    async def control(self, sandbox: RunningSandbox, path: str, body: dict[str, Any]) -> Any:
        async with httpx.AsyncClient(base_url=sandbox.url) as http:
            response = await http.post(path, json=body)
            response.raise_for_status()
            return response.json()

    def faults(self, sandbox: RunningSandbox, **plan: Any) -> None:
        """Set a sandbox's fault plan (adapters/sandbox/faults.py); no arguments clears it."""
        sandbox.injector.plan = FaultPlan(**plan) if plan else None

    async def hold(
        self, token: str, train: dict[str, Any], key: str, passengers: int = 1, **extra: Any
    ) -> dict[str, Any]:
        return await self.hub.gql(
            token,
            f"""mutation($i: HoldSeatsInput!, $k: String!) {{
                 holdSeats(input: $i, idempotencyKey: $k) {{ {BOOKING_FIELDS} }} }}""",
            {
                "i": {
                    "trainNo": train["trainNo"],
                    "runDate": train["runDate"],
                    "from": train["from"]["code"],
                    "to": train["to"]["code"],
                    "passengers": passengers,
                    **extra,
                },
                "k": key,
            },
        )

    async def pay(
        self, token: str, booking: dict[str, Any], key: str, payment_key: str | None = None
    ) -> dict[str, Any]:
        """The card step (the gateway's SDK in the app), then payBooking; pass the
        `payment_key` of an earlier try to retry it."""
        if payment_key is None:
            payment_key = await self.hub.card_present(booking["orderId"], booking["amount"])
        return await self.hub.gql(
            token,
            f"""mutation($b: UUID!, $p: String!, $k: String!) {{
                 payBooking(bookingId: $b, paymentKey: $p, idempotencyKey: $k)
                 {{ {BOOKING_FIELDS} }} }}""",
            {"b": booking["id"], "p": payment_key, "k": key},
        )

    async def cancel(self, token: str, booking_id: str) -> dict[str, Any]:
        return await self.hub.gql(
            token,
            f"""mutation($b: UUID!) {{ cancelBooking(bookingId: $b) {{ {BOOKING_FIELDS} }} }}""",
            {"b": booking_id},
        )


@asynccontextmanager
async def mobility_world(
    migrated_url: str, kafka_bootstrap: str, **overrides: Any
) -> AsyncIterator[MobilityWorld]:
    sandboxes = [registry.get(name).sandbox for name in ("tago", "railbooking", "odsay")]
    assert all(sandboxes)
    tago, railbooking, odsay = sandboxes
    assert tago and railbooking and odsay
    async with (
        running(tago) as timetable,
        running(railbooking) as booking,
        running(odsay) as routes,
    ):
        # The read-only upstreams get attempts of 1.2 s, not 0.5: a pause of the one event
        # loop that runs the hub and the sandboxes (a full collection took 0.47 s in a
        # test worker) timed every train call out at once, which opened tago's breaker.
        # The search's own 2.5 s budget still bounds them.
        with (
            adapter_environment(booking),
            adapter_environment(timetable, routes, timeout_seconds=2.4),
        ):
            async with payments_world(migrated_url, kafka_bootstrap, **overrides) as hub:
                yield MobilityWorld(hub, timetable, booking, routes)
