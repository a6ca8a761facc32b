"""The citizen's consents page: the apps they approved with scopes and dates, revoking one
(its tokens stop working on GraphQL within seconds), and signing out on the server."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.oauth import (
    PASSWORD,
    REDIRECT,
    Hub,
    authorize_url,
    hidden_fields,
    pkce,
    redirect_params,
)

pytestmark = pytest.mark.db

VIEWER = "{ viewer { clientId citizen { username } } }"


class Citizen:
    """One citizen's browser: signs in, approves apps, manages them on /oauth/consents."""

    def __init__(self, hub: Hub, username: str, http: httpx.AsyncClient) -> None:
        self.hub = hub
        self.username = username
        self.http = http
        self.last_consent_page = ""

    async def approve(self, client_id: str, client_secret: str, scope: str) -> dict[str, str]:
        """Approve the app (signing in if needed); the tokens the app gets."""
        verifier, challenge = pkce()
        page = await self.http.get(authorize_url(self.hub.url, client_id, challenge, scope=scope))
        if 'action="/oauth/login"' in page.text:
            signed_in = await self.http.post(
                "/oauth/login",
                data={**hidden_fields(page.text), "username": self.username, "password": PASSWORD},
            )
            assert signed_in.status_code == 303, signed_in.text
            page = await self.http.get(signed_in.headers["location"])
        self.last_consent_page = page.text
        decided = await self.http.post(
            "/oauth/authorize", data={**hidden_fields(page.text), "decision": "approve"}
        )
        tokens = await self.http.post(
            "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": redirect_params(decided)["code"],
                "redirect_uri": REDIRECT,
                "code_verifier": verifier,
            },
            auth=(client_id, client_secret),
        )
        assert tokens.status_code == 200, tokens.text
        return dict(tokens.json())

    async def consents(self) -> httpx.Response:
        page = await self.http.get("/oauth/consents")
        assert page.status_code == 200
        return page


async def app(hub: Hub, name: str, scopes: str = "profile") -> tuple[str, str]:
    client = await hub.client(name=name, scope_names=scopes, redirect_uris=[REDIRECT])
    return client.client_id, client.client_secret or ""


async def graphql(hub: Hub, access_token: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=hub.url, timeout=10) as http:
        return await http.post(
            "/graphql", json={"query": VIEWER}, headers={"Authorization": f"Bearer {access_token}"}
        )


async def until_unauthorized(hub: Hub, access_token: str, within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while (await graphql(hub, access_token)).status_code != 401:
        assert asyncio.get_running_loop().time() < deadline, "still accepted after revocation"
        await asyncio.sleep(0.2)


async def test_lists_approved_apps_and_revoking_one_ends_its_access(auth_hub: Hub) -> None:
    async with httpx.AsyncClient(base_url=auth_hub.url, timeout=30) as http:
        citizen = Citizen(auth_hub, await auth_hub.citizen(), http)
        kept_id, kept_secret = await app(auth_hub, "Walk to school", "profile sensors:read")
        gone_id, gone_secret = await app(auth_hub, "Taxi <b>now</b>")
        kept = await citizen.approve(kept_id, kept_secret, "profile sensors:read")
        assert 'href="/oauth/consents"' in citizen.last_consent_page  # how citizens find it
        gone = await citizen.approve(gone_id, gone_secret, "profile")
        assert (await graphql(auth_hub, gone["access_token"])).status_code == 200

        page = (await citizen.consents()).text
        assert "Walk to school" in page
        assert "Taxi &lt;b&gt;now&lt;/b&gt;" in page and "<b>now" not in page  # escaped
        assert "See your name and account." in page  # the scope's consent text
        assert "<code>sensors:read</code>" in page
        assert "KST" in page  # when it was approved
        assert "<script" not in page
        forms = [
            hidden_fields(part) for part in page.split("<form")[1:] if "consents/revoke" in part
        ]
        assert {form["client_id"] for form in forms} == {kept_id, gone_id}

        revoked = await http.post(
            "/oauth/consents/revoke", data=next(f for f in forms if f["client_id"] == gone_id)
        )
        assert revoked.status_code == 303
        assert revoked.headers["location"] == "/oauth/consents"
        page = (await citizen.consents()).text
        assert "Taxi" not in page and "Walk to school" in page

        await until_unauthorized(auth_hub, gone["access_token"])
        refreshed = await http.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": gone["refresh_token"]},
            auth=(gone_id, gone_secret),
        )
        assert refreshed.json()["error"] == "invalid_grant"
        assert (await graphql(auth_hub, kept["access_token"])).status_code == 200


async def test_revoking_needs_the_pages_csrf_token(auth_hub: Hub) -> None:
    async with httpx.AsyncClient(base_url=auth_hub.url, timeout=30) as http:
        citizen = Citizen(auth_hub, await auth_hub.citizen(), http)
        client_id, secret = await app(auth_hub, "Parenting app")
        tokens = await citizen.approve(client_id, secret, "profile")
        forged = await http.post(
            "/oauth/consents/revoke", data={"client_id": client_id, "csrf_token": "guessed"}
        )
        assert forged.status_code == 403
        assert "Parenting app" in (await citizen.consents()).text
        assert (await graphql(auth_hub, tokens["access_token"])).status_code == 200


async def test_a_citizen_sees_only_their_own_apps_and_must_sign_in(auth_hub: Hub) -> None:
    async with (
        httpx.AsyncClient(base_url=auth_hub.url, timeout=30) as mine,
        httpx.AsyncClient(base_url=auth_hub.url, timeout=30) as theirs,
    ):
        first = Citizen(auth_hub, await auth_hub.citizen(), mine)
        second = Citizen(auth_hub, await auth_hub.citizen(), theirs)
        client_id, secret = await app(auth_hub, "Only mine")
        await first.approve(client_id, secret, "profile")
        other_id, other_secret = await app(auth_hub, "Someone else's")
        await second.approve(other_id, other_secret, "profile")
        page = (await first.consents()).text
        assert "Only mine" in page and "Someone else" not in page

    async with httpx.AsyncClient(base_url=auth_hub.url, timeout=30) as stranger:
        page = (await stranger.get("/oauth/consents")).text
        assert 'action="/oauth/login"' in page and "Only mine" not in page
        fields = hidden_fields(page)
        assert fields["next"] == "/oauth/consents"
        signed_in = await stranger.post(
            "/oauth/login", data={**fields, "username": first.username, "password": PASSWORD}
        )
        assert signed_in.status_code == 303
        assert signed_in.headers["location"] == "/oauth/consents"
        assert "Only mine" in (await stranger.get("/oauth/consents")).text


async def test_sign_out_ends_the_session_for_a_copied_cookie_too(auth_hub: Hub) -> None:
    async with (
        httpx.AsyncClient(base_url=auth_hub.url, timeout=30) as http,
        httpx.AsyncClient(base_url=auth_hub.url, timeout=30) as copy,
    ):
        citizen = Citizen(auth_hub, await auth_hub.citizen(), http)
        client_id, secret = await app(auth_hub, "Copied cookie app")
        await citizen.approve(client_id, secret, "profile")
        page = (await citizen.consents()).text
        copy.cookies.update(http.cookies)  # an attacker's copy of the signed-in cookie
        assert "Copied cookie app" in (await copy.get("/oauth/consents")).text

        logout_form = page[page.index('action="/oauth/logout"') :]
        signed_out = await http.post("/oauth/logout", data=hidden_fields(logout_form))
        assert signed_out.status_code == 200
        cleared = signed_out.headers["set-cookie"].lower()  # in the browser too
        assert "ieum_session=" in cleared and "max-age=0" in cleared

        for browser in (http, copy):
            after = (await browser.get("/oauth/consents")).text
            assert 'action="/oauth/login"' in after and "Copied cookie app" not in after
        # The copy no longer approves apps in the citizen's name either.
        asked = await copy.get(authorize_url(auth_hub.url, client_id, pkce()[1]))
        assert 'action="/oauth/login"' in asked.text and 'name="decision"' not in asked.text
