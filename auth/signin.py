"""Signing a citizen in and out of the authorization pages.

Sign-in is throttled per account and per client IP (auth/throttle.py) before any password
is hashed, and answers alike for an unknown name and a wrong password: same page, same
status, same work (a dummy hash). Sign-out ends the session on the server, so a copy of
the cookie stops working too (auth/session.py).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from auth import pages
from auth.session import csrf_ok, csrf_token, signed_in
from auth.throttle import SignInThrottle, TooManyAttempts

WRONG_PASSWORD = "아이디 또는 비밀번호가 맞지 않습니다. · Wrong username or password."  # noqa: S105
# Where a sign-in form may send the citizen afterwards: an app's request, or their consents.
CONSENTS_PATH = "/oauth/consents"


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def login(request: Request) -> Response:
    state = request.app.state
    form = await request.form()
    sessions = await state.sessions.ready()
    session = sessions.read(request)
    next_url = str(form.get("next", ""))
    if not _allowed_next(next_url):
        return pages.error("잘못된 요청 · Invalid request", "Sign in from an app's request.")
    if not csrf_ok(session, str(form.get("csrf_token", ""))):
        return pages.error("요청 만료 · Request expired", "CSRF check failed; start again.", 403)
    throttle: SignInThrottle = state.signin_throttle
    username = str(form.get("username", ""))
    try:
        attempt = throttle.begin(username, client_ip(request))
    except TooManyAttempts as exc:
        response: Response = await _sign_in_again(
            request,
            next_url,
            csrf_token(session),
            f"시도가 너무 많습니다. {exc.retry_after}초 후에 다시 시도하세요. · {exc}.",
            status=429,
        )
        response.headers["Retry-After"] = str(exc.retry_after)
        sessions.write(response, session)
        return response
    citizen = await state.identity.authenticate(username, str(form.get("password", "")))
    if citizen is None:
        response = await _sign_in_again(request, next_url, csrf_token(session), WRONG_PASSWORD)
    else:
        throttle.succeeded(attempt)
        session = signed_in(citizen.user_id)
        response = RedirectResponse(next_url, status_code=303)
    sessions.write(response, session)
    return response


async def logout(request: Request) -> Response:
    """End the session here and on the server: a copy of the cookie is signed out too."""
    form = await request.form()
    sessions = await request.app.state.sessions.ready()
    session = sessions.read(request)
    if session.get("user_id") is not None:
        if not csrf_ok(session, str(form.get("csrf_token", ""))):
            return pages.error(
                "요청 만료 · Request expired", "CSRF check failed; start again.", 403
            )
        await sessions.end(session)
    response = pages.signed_out()
    sessions.clear(response)
    return response


routes = [
    Route("/oauth/login", login, methods=["POST"]),
    Route("/oauth/logout", logout, methods=["POST"]),
]


def _allowed_next(next_url: str) -> bool:
    parts = urlsplit(next_url)
    if parts.scheme or parts.netloc:
        return False
    return next_url.startswith("/oauth/authorize?") or next_url == CONSENTS_PATH


async def _sign_in_again(
    request: Request, next_url: str, csrf: str, error: str, status: int = 401
) -> Response:
    """The sign-in form again, naming the app the citizen was signing in for."""
    if next_url == CONSENTS_PATH:
        return pages.sign_in(None, csrf, next_url, error=error, status=status)
    client_id = dict(parse_qsl(urlsplit(next_url).query)).get("client_id", "")
    client = await anyio.to_thread.run_sync(request.app.state.oauth.query_client, client_id)
    return pages.sign_in(
        client.name if client else client_id, csrf, next_url, error=error, status=status
    )
