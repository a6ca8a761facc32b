"""Small helpers the tests share."""

from __future__ import annotations

from typing import Any

import httpx


async def graphql(
    client: httpx.AsyncClient, query: str, variables: dict[str, object] | None = None
) -> dict[str, Any]:
    """POST one operation; the HTTP status must be 200 (GraphQL errors are in the body)."""
    response = await client.post("/graphql", json={"query": query, "variables": variables or {}})
    assert response.status_code == 200, response.text
    return response.json()
