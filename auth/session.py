"""The citizen's sign-in session on the authorization pages: a signed, HttpOnly cookie."""

from __future__ import annotations

import secrets
from typing import Any

import asyncpg
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from auth import store

COOKIE = "ieum_session"
MAX_AGE_SECONDS = 30 * 60


class Sessions:
    """Reads and writes the cookie; its signing secret is shared by all hub replicas."""

    def __init__(self, pool: asyncpg.Pool, *, secure: bool) -> None:
        self.pool = pool
        self.secure = secure
        self._serializer: URLSafeTimedSerializer | None = None

    async def ready(self) -> Sessions:
        """Load the signing secret on first use (made by the first replica that asks)."""
        if self._serializer is None:
            secret = await store.hub_secret(self.pool, "session", secrets.token_urlsafe(48))
            self._serializer = URLSafeTimedSerializer(secret, salt="ieum.session")
        return self

    @property
    def serializer(self) -> URLSafeTimedSerializer:
        assert self._serializer is not None, "await Sessions.ready() first"
        return self._serializer

    def read(self, request: Request) -> dict[str, Any]:
        raw = request.cookies.get(COOKIE)
        if not raw:
            return {}
        try:
            data = self.serializer.loads(raw, max_age=MAX_AGE_SECONDS)
        except BadSignature:
            return {}
        return data if isinstance(data, dict) else {}

    def write(self, response: Response, data: dict[str, Any]) -> None:
        response.set_cookie(
            COOKIE,
            self.serializer.dumps(data),
            max_age=MAX_AGE_SECONDS,
            httponly=True,
            secure=self.secure,
            samesite="lax",
            path="/oauth",
        )


def csrf_token(session: dict[str, Any]) -> str:
    """The session's CSRF token, made on first use (the caller writes the session back)."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return str(session["csrf"])


def csrf_ok(session: dict[str, Any], submitted: str | None) -> bool:
    expected = session.get("csrf")
    return bool(expected and submitted) and secrets.compare_digest(str(expected), str(submitted))
