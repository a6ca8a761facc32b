"""Payments on odd input the GraphQL fuzz found (tests/hub/test_fuzz.py): a client's
mistake keeps its own code however it is reached, and is never taken for our fault."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import httpx
import pytest

from resolvers.payments import scopes
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
