"""The sign-in and consent pages in a real browser: headless Chromium driven by Playwright.

Chromium comes from Debian's `chromium` package; the fixture installs it when it is
missing and the tests run as root with apt-get (as in CI), and skips with the reason
otherwise. Playwright never downloads a browser of its own here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.async_api import Browser, Page, Route, async_playwright

from tests.oauth import PASSWORD, REDIRECT, Hub, authorize_url, pkce

pytestmark = [pytest.mark.db, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def ensure_chromium() -> str:
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("Debian's chromium is not installed and cannot be installed here")
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        subprocess.run(command, check=True, env=env, capture_output=True, timeout=900)
    return CHROMIUM


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    executable = ensure_chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, args=FLAGS)
        yield launched
        await launched.close()


async def open_consent(browser: Browser, hub: Hub, scope: str) -> tuple[Page, list[str], str]:
    """A page signed in and showing the consent screen; URLs the app received go to the list."""
    client = await hub.client(
        name="우리동네 미세먼지", redirect_uris=[REDIRECT], scope_names="profile sensors:read"
    )
    username = await hub.citizen()
    page = await (await browser.new_context()).new_page()
    received: list[str] = []

    async def app_callback(route: Route) -> None:  # the app's redirect URI, played by us
        received.append(route.request.url)
        await route.fulfill(status=200, content_type="text/html", body="<p>app</p>")

    await page.route(f"{REDIRECT}**", app_callback)
    await page.goto(authorize_url(hub.url, client.client_id, pkce()[1], scope=scope))
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_selector("button[value=approve]")
    return page, received, client.client_id


async def test_consent_page_explains_and_approves(
    browser: Browser, auth_hub: Hub, tmp_path: Path
) -> None:
    page, received, _ = await open_consent(browser, auth_hub, "profile sensors:read")
    text = await page.inner_text("body")
    assert "우리동네 미세먼지" in text
    assert "김시민" in text
    assert "구역별 도시 센서 측정값" in text  # sensors:read in Korean
    assert "Read city sensor values" in text  # and in English
    assert "이름과 계정 정보" in text and "See your name and account." in text
    await page.screenshot(path=str(tmp_path / "consent.png"))  # to look at when it fails

    await page.click("button[value=approve]")
    await page.wait_for_url(f"{REDIRECT}**")
    params = parse_qs(urlsplit(received[-1]).query)
    assert params["code"][0]
    assert params["iss"] == [auth_hub.url]


async def test_consent_page_denies(browser: Browser, auth_hub: Hub) -> None:
    page, received, _ = await open_consent(browser, auth_hub, "profile")
    await page.click("button[value=deny]")
    await page.wait_for_url(f"{REDIRECT}**")
    assert parse_qs(urlsplit(received[-1]).query)["error"] == ["access_denied"]


async def test_consent_page_cannot_be_framed(browser: Browser, auth_hub: Hub) -> None:
    _, _, client_id = await open_consent(browser, auth_hub, "profile")
    framing = await (await browser.new_context()).new_page()
    url = authorize_url(auth_hub.url, client_id, pkce()[1])
    await framing.set_content(f'<iframe src="{url}" width="600" height="400"></iframe>')
    await framing.wait_for_timeout(1000)
    frame = framing.frames[1]
    assert await frame.query_selector("form") is None  # blocked by frame-ancestors / XFO
    async with httpx.AsyncClient() as http:  # while the page itself serves fine
        assert (await http.get(url)).status_code == 200
