"""GraphiQL at /graphql works on a closed network (issue 17): the hub serves its scripts and
styles itself (hub/graphiql), and the page makes no request that leaves loopback.

The browser is headless Chromium as in tests/auth/test_consent_browser.py, with every
request to another host refused, as a city network without internet would.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from playwright.async_api import Browser, Page, Request, Route, WebSocket, async_playwright

from tests.auth.test_consent_browser import FLAGS, ensure_chromium
from tests.oauth import Hub

pytestmark = [pytest.mark.db, pytest.mark.slow]

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
CONTENT_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
}
# Needs a token with a payments scope to get past the scope check: the answer tells a
# subscription sent with the headers editor's token from one sent without.
SUBSCRIPTION = 'subscription { paymentStatus(orderId: "no-such-order") { status } }'


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    executable = ensure_chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, args=FLAGS)
        yield launched
        await launched.close()


class Offline:
    """A page whose requests off loopback are refused and listed; it lists the requests
    and WebSockets that stayed on loopback too."""

    def __init__(self) -> None:
        self.refused: list[str] = []
        self.requests: list[Request] = []
        self.websockets: list[str] = []

    async def open(self, browser: Browser, url: str) -> Page:
        context = await browser.new_context()
        await context.route("**/*", self.only_loopback)
        page = await context.new_page()
        page.on("websocket", self.on_websocket)
        await page.goto(url)
        return page

    async def only_loopback(self, route: Route) -> None:
        if urlsplit(route.request.url).hostname in LOOPBACK:
            self.requests.append(route.request)
            await route.continue_()
        else:
            self.refused.append(route.request.url)
            await route.abort("internetdisconnected")

    def on_websocket(self, ws: WebSocket) -> None:
        self.websockets.append(ws.url)


async def set_editor(page: Page, selector: str, text: str) -> None:
    """Replace the text of the editor shown in `selector` through its CodeMirror, as typing
    would (change events)."""
    await page.locator(f"{selector} .CodeMirror:visible").evaluate(
        "(element, text) => element.CodeMirror.setValue(text)", text
    )


async def set_query(page: Page, query: str) -> None:
    """Type `query`; done when GraphiQL has parsed it (it then puts it in the URL): the
    fetcher tells a subscription from the parsed document."""
    await set_editor(page, '[aria-label="Query Editor"]', query)
    await page.wait_for_function(
        "query => new URLSearchParams(location.search).get('q') === query", arg=query
    )


async def set_headers(page: Page, headers: dict[str, str]) -> None:
    """Type `headers` in the headers editor (in the tools' section, beside the hidden
    variables editor); done when GraphiQL has kept them."""
    text = json.dumps(headers)
    await page.get_by_role("button", name="Headers").click()
    await set_editor(page, '[aria-label="Headers"]', text)
    await page.wait_for_function(
        "text => localStorage.getItem('graphiql:headers') === text", arg=text
    )


async def run(page: Page, query: str) -> object:
    """Run `query` with the execute button; the JSON shown in the result window."""
    await set_query(page, query)
    result = page.locator('[aria-label="Result Window"] .CodeMirror').first
    await result.evaluate("element => element.CodeMirror.setValue('')")
    await page.click(".graphiql-execute-button")
    await page.wait_for_function(
        """() => {
            const editor = document.querySelector('[aria-label="Result Window"] .CodeMirror');
            return editor.CodeMirror.getValue().trim().startsWith('{');
        }"""
    )
    return json.loads(await result.evaluate("element => element.CodeMirror.getValue()"))


async def test_graphiql_runs_queries_and_subscriptions_offline(
    browser: Browser, auth_hub: Hub, tmp_path: Path
) -> None:
    offline = Offline()
    page = await offline.open(browser, f"{auth_hub.url}/graphql")
    assert offline.refused == []  # a CDN's scripts and styles would be listed here
    await page.wait_for_selector('[aria-label="Query Editor"] .CodeMirror')
    await page.screenshot(path=str(tmp_path / "graphiql.png"))  # to look at when it fails

    answer = await run(page, '{ district(code: "11110") { name } }')
    assert answer == {"data": {"district": {"name": "종로구"}}}

    # A subscription goes over the WebSocket, first without a token …
    without = await run(page, SUBSCRIPTION)
    assert "needs payments:collect" in json.dumps(without, ensure_ascii=False), without
    assert offline.websockets == [auth_hub.url.replace("http://", "ws://") + "/graphql"]

    # … then with the one typed into the headers editor: it gets past the scope check.
    token = await auth_hub.token("payments:collect")
    await set_headers(page, {"Authorization": f"Bearer {token}"})
    with_token = await run(page, SUBSCRIPTION)
    assert "no such payment of yours" in json.dumps(with_token, ensure_ascii=False), with_token

    # And a query over HTTP carries it too.
    assert await run(page, '{ district(code: "11110") { code } }') == {
        "data": {"district": {"code": "11110"}}
    }
    posts = [r for r in offline.requests if r.method == "POST"]
    assert posts[-1].headers.get("authorization") == f"Bearer {token}"

    assert offline.refused == []
    assert all(urlsplit(r.url).hostname in LOOPBACK for r in offline.requests)
    assert all(urlsplit(url).hostname in LOOPBACK for url in offline.websockets)


async def test_every_asset_of_the_page_is_served(client: httpx.AsyncClient) -> None:
    page = await client.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    urls = re.findall(r'<(?:script|link)[^>]*? (?:src|href)="([^"]+)"', page.text)
    assets = [url for url in urls if not url.startswith("data:")]
    assert len(assets) == 6, urls  # react, react-dom, graphiql and the explorer: js and css
    for url in assets:
        absolute = urljoin(str(page.url), url)
        assert urlsplit(absolute).netloc == urlsplit(str(page.url)).netloc, url
        response = await client.get(absolute)
        assert response.status_code == 200, url
        media_type = response.headers["content-type"].partition(";")[0]
        assert media_type in CONTENT_TYPES[Path(url).suffix], (url, media_type)
        assert len(response.content) > 500, url
