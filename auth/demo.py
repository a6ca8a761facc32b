"""Demo data for `ieum serve`: a partner client, a citizen app and a citizen account.

The partner holds every scope the installed domains declare; the domains' own demo data
(a simulated taxi fleet …) is owned by it. The citizen app is a public client whose
redirect URI is the hub's own `/demo/callback`: the banner's sign-in link starts the
authorization code flow with PKCE, the citizen signs in and consents on the real pages, and
the callback exchanges the code and shows the token, so trying the citizen flow takes one
click instead of registering a client and building a PKCE URL by hand.

Loaded once per database (idempotent) and skipped with `--no-demo`. The demo client's
secret is kept in plain text in `hub_secrets` so the banner can print it on every start:
fine for a demo, and the reason a production hub runs with `--no-demo`.
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
from dataclasses import dataclass
from urllib.parse import urlencode

import asyncpg
import httpx
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from auth import clients, scopes, store
from auth.identity import LocalAccounts

CLIENT_ID = "demo-partner"
APP_ID = "demo-app"
CITIZEN = "demo"
CALLBACK = "/demo/callback"
FLOW_COOKIE = "ieum_demo_flow"
FLOW_SECONDS = 600  # time to sign in and consent


@dataclass(frozen=True)
class DemoCredentials:
    client_id: str
    client_secret: str
    citizen: str
    citizen_password: str
    app_id: str


async def load(pool: asyncpg.Pool, issuer: str) -> DemoCredentials:
    """Create the demo clients and citizen if this database has none yet; their credentials.
    The citizen app's redirect URI is this hub's callback (any port on loopback)."""
    client_secret = await store.hub_secret(pool, "demo_client_secret", secrets.token_urlsafe(24))
    password = await store.hub_secret(pool, "demo_citizen_password", secrets.token_urlsafe(9))
    if await store.get_client(pool, CLIENT_ID) is None:
        await clients.create(
            pool,
            client_id=CLIENT_ID,
            name="Ieum demo partner",
            scope_names=scopes.names(),
        )
    await store.set_client_secret(pool, CLIENT_ID, store.digest(client_secret))
    if await store.get_client(pool, APP_ID) is None:
        await clients.create(
            pool,
            client_id=APP_ID,
            name="Ieum demo citizen app",
            scope_names=scopes.citizen_names(),
            redirect_uris=[issuer + CALLBACK],
            public=True,
        )
    else:  # the hub may have moved to another address or port since
        await pool.execute(
            "UPDATE oauth_clients SET redirect_uris = $2 WHERE client_id = $1",
            APP_ID,
            [issuer + CALLBACK],
        )
    if await store.get_citizen_by_username(pool, CITIZEN) is None:
        await LocalAccounts(pool).create(CITIZEN, "데모 시민", password)
    return DemoCredentials(CLIENT_ID, client_secret, CITIZEN, password, APP_ID)


async def _flows(request: Request) -> URLSafeTimedSerializer:
    """Signs the browser's flow cookie, with a secret every hub process shares."""
    secret = await store.hub_secret(request.app.state.db, "demo_flow", secrets.token_urlsafe(32))
    return URLSafeTimedSerializer(secret, salt="ieum.demo.flow")


NO_DEMO = "<p>This hub runs without demo data.</p>"


async def _demo_app(request: Request) -> str | None:
    """The demo app's registered redirect URI, or None on a hub without demo data."""
    client = await store.get_client(request.app.state.db, APP_ID)
    uris = list(client["redirect_uris"]) if client is not None else []
    return str(uris[0]) if uris else None


async def sign_in(request: Request) -> Response:
    """Start the citizen flow as an app would: PKCE verifier and state kept in a signed
    cookie of this browser, then off to the authorization page."""
    redirect_uri = await _demo_app(request)
    if redirect_uri is None:
        return HTMLResponse(_page("No demo app", NO_DEMO), 404)
    verifier = secrets.token_urlsafe(48)
    state = secrets.token_urlsafe(16)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    query = urlencode(
        {
            "response_type": "code",
            "client_id": APP_ID,
            "redirect_uri": redirect_uri,
            "scope": " ".join(scopes.citizen_names()),
            "state": state,
            "code_challenge": challenge.rstrip(b"=").decode(),
            "code_challenge_method": "S256",
        }
    )
    response = RedirectResponse(f"/oauth/authorize?{query}", status_code=303)
    cookie = (await _flows(request)).dumps({"verifier": verifier, "state": state})
    response.set_cookie(
        FLOW_COOKIE, cookie, max_age=FLOW_SECONDS, httponly=True, samesite="lax", path="/demo"
    )
    return response


async def callback(request: Request) -> Response:
    """Where the authorization page sends the citizen back: exchange the code at the token
    endpoint, as the app's backend would, and show what came back."""
    redirect_uri = await _demo_app(request)
    if redirect_uri is None:
        return HTMLResponse(_page("No demo app", NO_DEMO), 404)
    params = request.query_params
    if error := params.get("error"):
        detail = params.get("error_description", "")
        return HTMLResponse(_page("Not signed in", f"<p>{_e(error)}: {_e(detail)}</p>"), 400)
    flows = await _flows(request)
    try:
        flow = flows.loads(request.cookies.get(FLOW_COOKIE, ""), max_age=FLOW_SECONDS)
    except BadSignature:
        flow = None
    if not flow or not secrets.compare_digest(str(flow["state"]), params.get("state", "")):
        again = '<p><a href="/demo/sign-in">Start again</a>.</p>'
        return HTMLResponse(_page("Sign-in expired", again), 400)
    async with httpx.AsyncClient(base_url=str(request.base_url), timeout=10) as http:
        answer = await http.post(
            "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": params.get("code", ""),
                "redirect_uri": redirect_uri,
                "client_id": APP_ID,
                "code_verifier": str(flow["verifier"]),
            },
        )
    body = answer.json()
    if answer.status_code != 200:
        text = f"<p>{_e(body.get('error', ''))}: {_e(body.get('error_description', ''))}</p>"
        return HTMLResponse(_page("Token refused", text), 400)
    token = str(body["access_token"])
    graphql = str(request.base_url).rstrip("/") + "/graphql"
    rows = "".join(
        f"<tr><th>{_e(name)}</th><td><code>{_e(str(body.get(name, '')))}</code></td></tr>"
        for name in ("access_token", "token_type", "expires_in", "scope", "refresh_token")
    )
    curl = (
        f"curl -s {graphql} -H 'Authorization: Bearer {token}'"
        " -H 'Content-Type: application/json' -d '{\"query\": \"{ __typename }\"}'"
    )
    content = (
        f"<p>The demo citizen's token for {_e(APP_ID)}:</p><table>{rows}</table>"
        f"<p>Try it:</p><pre>{_e(curl)}</pre>"
        '<p>In GraphiQL, add the header <code>{"Authorization": "Bearer …"}</code>.</p>'
    )
    response = HTMLResponse(_page("Signed in", content))
    response.delete_cookie(FLOW_COOKIE, path="/demo")
    response.headers["Cache-Control"] = "no-store"
    return response


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _page(title: str, content: str) -> str:
    return (
        '<!doctype html><html lang="en"><meta charset="utf-8">'
        f"<title>{_e(title)} · Ieum demo</title><h1>{_e(title)}</h1>{content}</html>"
    )


routes = [
    Route("/demo/sign-in", sign_in),
    Route(CALLBACK, callback),
]
