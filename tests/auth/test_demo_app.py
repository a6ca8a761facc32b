"""The demo citizen app: the banner's link signs the demo citizen in through the real
authorization pages (code + PKCE) and the hub's own callback shows the token."""

from __future__ import annotations

import html
import re

import httpx

from auth import demo
from tests.oauth import Hub, hidden_fields


async def test_without_demo_data_there_is_no_demo_app(auth_hub: Hub) -> None:
    async with httpx.AsyncClient(base_url=auth_hub.url) as browser:
        assert (await browser.get("/demo/sign-in")).status_code == 404
        assert (await browser.get("/demo/callback?code=x&state=y")).status_code == 404


async def test_the_sign_in_link_ends_with_a_working_citizen_token(auth_hub: Hub) -> None:
    credentials = await demo.load(auth_hub.pool, auth_hub.url)
    async with httpx.AsyncClient(base_url=auth_hub.url, timeout=10) as browser:
        started = await browser.get("/demo/sign-in")
        assert started.status_code == 303
        assert "code_challenge_method=S256" in started.headers["location"]
        page = await browser.get(started.headers["location"])
        signed_in = await browser.post(
            "/oauth/login",
            data={
                **hidden_fields(page.text),
                "username": credentials.citizen,
                "password": credentials.citizen_password,
            },
        )
        consent = await browser.get(signed_in.headers["location"])
        assert "Ieum demo citizen app" in consent.text
        approved = await browser.post(
            "/oauth/authorize", data={**hidden_fields(consent.text), "decision": "approve"}
        )
        assert approved.status_code == 302
        assert approved.headers["location"].startswith(f"{auth_hub.url}/demo/callback?")
        shown = await browser.get(approved.headers["location"])
        assert shown.status_code == 200, shown.text
        assert shown.headers["cache-control"] == "no-store"
        fields = dict(re.findall(r"<th>(\w+)</th><td><code>([^<]*)</code>", shown.text))
        token = html.unescape(fields["access_token"])
        assert "mobility:book" in fields["scope"].split()
        assert "payments:collect" not in fields["scope"].split()  # officials' scopes stay out

        whoami = await browser.post(
            "/graphql",
            json={"query": "{ viewer { clientId citizen { username } } }"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert whoami.json() == {
            "data": {"viewer": {"clientId": demo.APP_ID, "citizen": {"username": "demo"}}}
        }

        replayed = await browser.get(approved.headers["location"])  # cookie gone: a new start
        assert replayed.status_code == 400
        assert "/demo/sign-in" in replayed.text


async def test_a_callback_with_another_flows_state_is_refused(auth_hub: Hub) -> None:
    await demo.load(auth_hub.pool, auth_hub.url)
    async with httpx.AsyncClient(base_url=auth_hub.url, timeout=10) as browser:
        await browser.get("/demo/sign-in")  # this browser's flow cookie
        forged = await browser.get("/demo/callback", params={"code": "x", "state": "not-mine"})
        assert forged.status_code == 400
        assert "Sign-in expired" in forged.text
