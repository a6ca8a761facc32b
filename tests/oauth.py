"""Helpers for the OAuth tests: register clients and citizens, and approve in the pages."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import asyncpg
import httpx

from auth import clients
from auth.clients import NewClient
from auth.identity import LocalAccounts

REDIRECT = "http://127.0.0.1:9999/callback"
PASSWORD = "correct horse battery"


@dataclass(frozen=True)
class Hub:
    url: str
    pool: asyncpg.Pool

    async def client(self, **kwargs: Any) -> NewClient:
        kwargs.setdefault("name", "Test app")
        kwargs.setdefault("scope_names", "profile sensors:read")
        return await clients.create(self.pool, **kwargs)

    async def token(self, scopes: str | list[str]) -> str:
        """An access token of a new client holding `scopes` (client credentials)."""
        client = await self.client(scope_names=scopes)
        async with httpx.AsyncClient(base_url=self.url) as http:
            response = await http.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(client.client_id, client.client_secret or ""),
            )
        return str(response.json()["access_token"])

    async def citizen(self) -> str:
        username = f"citizen_{secrets.token_hex(4)}"
        await LocalAccounts(self.pool).create(username, "김시민", PASSWORD)
        return username


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def authorize_url(base: str, client_id: str, challenge: str | None, **extra: str) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": "profile",
        "state": secrets.token_urlsafe(8),
        **({"code_challenge": challenge, "code_challenge_method": "S256"} if challenge else {}),
        **extra,
    }
    return f"{base}/oauth/authorize?{urlencode(params)}"


def hidden_fields(page: str) -> dict[str, str]:
    return {
        html.unescape(name): html.unescape(value)
        for name, value in re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', page)
    }


async def approve(
    base: str, url: str, username: str, password: str = PASSWORD, decision: str = "approve"
) -> httpx.Response:
    """Sign in and decide on the consent page as a browser would; the final response."""
    async with httpx.AsyncClient(base_url=base, timeout=10) as browser:
        page = await browser.get(url)
        if page.status_code != 200 or 'action="/oauth/login"' not in page.text:
            return page
        signed_in = await browser.post(
            "/oauth/login",
            data={**hidden_fields(page.text), "username": username, "password": password},
        )
        if signed_in.status_code != 303:
            return signed_in
        consent = await browser.get(signed_in.headers["location"])
        assert 'name="decision"' in consent.text, consent.text
        return await browser.post(
            "/oauth/authorize", data={**hidden_fields(consent.text), "decision": decision}
        )


def redirect_params(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?"), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def code_for(hub: Hub, client_id: str, scope: str = "profile") -> tuple[str, str]:
    """An authorization code and its PKCE verifier, approved by a new citizen."""
    verifier, challenge = pkce()
    response = await approve(
        hub.url, authorize_url(hub.url, client_id, challenge, scope=scope), await hub.citizen()
    )
    return redirect_params(response)["code"], verifier
