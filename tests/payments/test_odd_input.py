"""Payments on odd input the GraphQL fuzz found (tests/hub/test_fuzz.py): a client's
mistake keeps its own code however it is reached, and is never taken for our fault."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import httpx
import pytest

from adapters.sandbox.server import running
from adapters.tosspayments.sandbox import SANDBOX
from hub.core.errors import UpstreamUnavailable
from resolvers.payments import scopes
from resolvers.payments.settings import PaymentsSettings
from schema.payments.upstreams import Upstreams
from tests.oauth import Hub

REFUND = """mutation($p: UUID!, $k: String!) {
  refundPayment(paymentId: $p, reason: "과오납", idempotencyKey: $k) { refund { amount } } }"""


async def errors_of(hub: Hub, token: str, query: str, **variables: Any) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=hub.url, timeout=10) as http:
        response = await http.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 200, response.text
    return list(response.json()["errors"])


@pytest.mark.db
async def test_a_refusal_replayed_for_its_key_keeps_its_code(
    auth_hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    """The replay is the client's mistake again, not our fault: it was logged as an
    unexpected error with a traceback, and counted as INTERNAL_SERVER_ERROR."""
    token = await auth_hub.token(scopes.SUPERVISE.name)
    refund = {"p": str(uuid.uuid4()), "k": uuid.uuid4().hex}
    (first,) = await errors_of(auth_hub, token, REFUND, **refund)
    (again,) = await errors_of(auth_hub, token, REFUND, **refund)
    assert first["extensions"]["code"] == "NOT_REFUNDABLE"
    assert again["message"] == first["message"] == "a missing payment cannot be refunded"
    assert again["extensions"] == {**first["extensions"], "replayed": True}
    faults = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert faults == []


async def test_a_gateway_sandbox_that_does_not_take_the_webhook_address_is_unavailable() -> None:
    """The in-process gateway sandbox is told where to send webhooks on first use; when it
    did not answer (a ReadTimeout under load), the httpx error ended as
    INTERNAL_SERVER_ERROR instead of UPSTREAM_UNAVAILABLE."""
    async with running(SANDBOX) as gone:
        pass
    upstreams = Upstreams(PaymentsSettings(), issuer="http://127.0.0.1:9")
    with pytest.raises(UpstreamUnavailable, match="did not take the hub's webhook address"):
        await upstreams._point_webhooks(gone)
