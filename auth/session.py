"""The citizen's sign-in session on the authorization pages: a signed, HttpOnly cookie.

A signed-in session carries a random session id. Signing out records the id as ended in
PostgreSQL, and every hub process keeps the ended ids in memory (re-read every
`REFRESH_SECONDS`, as token revocations are), so a copy of the cookie stops working at
once on the process that signed out and within seconds on the others, while reading a
session stays free of I/O.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from auth import store

log = logging.getLogger(__name__)

COOKIE = "ieum_session"
COOKIE_PATH = "/oauth"
MAX_AGE_SECONDS = 30 * 60
REFRESH_SECONDS = 2.0


class Sessions:
    """Reads and writes the cookie; its signing secret is shared by all hub replicas."""

    def __init__(self, pool: asyncpg.Pool, *, secure: bool) -> None:
        self.pool = pool
        self.secure = secure
        self._serializer: URLSafeTimedSerializer | None = None
        self.ended: frozenset[str] = frozenset()  # hashes of ended session ids
        # Ended by this process lately: kept across a refresh that read before they were.
        self._ended_here: dict[str, float] = {}

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
        """The session's data; empty when there is none, it expired, or it was ended."""
        raw = request.cookies.get(COOKIE)
        if not raw:
            return {}
        try:
            data = self.serializer.loads(raw, max_age=MAX_AGE_SECONDS)
        except BadSignature:
            return {}
        if not isinstance(data, dict):
            return {}
        sid = data.get("sid")
        if sid is not None and _digest(str(sid)) in self.ended:
            return {}
        return data

    def write(self, response: Response, data: dict[str, Any]) -> None:
        response.set_cookie(
            COOKIE,
            self.serializer.dumps(data),
            max_age=MAX_AGE_SECONDS,
            httponly=True,
            secure=self.secure,
            samesite="lax",
            path=COOKIE_PATH,
        )

    def clear(self, response: Response) -> None:
        response.delete_cookie(
            COOKIE, httponly=True, secure=self.secure, samesite="lax", path=COOKIE_PATH
        )

    async def end(self, session: dict[str, Any]) -> None:
        """Sign out: this session's cookie, and every copy of it, stops working."""
        sid, user_id = session.get("sid"), session.get("user_id")
        if sid is None or user_id is None:
            return
        sid_hash = _digest(str(sid))
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM citizen_sessions_ended WHERE expires_at < now()")
            # The cookie may have been signed again just now; no copy outlives this.
            await conn.execute(
                "INSERT INTO citizen_sessions_ended (sid_hash, user_id, expires_at)"
                " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                sid_hash,
                uuid.UUID(str(user_id)),
                datetime.now(UTC) + timedelta(seconds=MAX_AGE_SECONDS + 60),
            )
        self._ended_here[sid_hash] = time.monotonic() + 3 * REFRESH_SECONDS
        self.ended = self.ended | {sid_hash}

    async def refresh(self) -> None:
        rows = await self.pool.fetch(
            "SELECT sid_hash FROM citizen_sessions_ended WHERE expires_at > now()"
        )
        now = time.monotonic()
        self._ended_here = {h: until for h, until in self._ended_here.items() if until > now}
        self.ended = frozenset(row["sid_hash"] for row in rows) | self._ended_here.keys()

    async def run(self) -> None:
        """Keep the ended sessions current until cancelled."""
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            try:
                await self.refresh()
            except Exception as exc:
                log.warning("auth.sessions.refresh_failed error=%r", exc)


def signed_in(user_id: uuid.UUID) -> dict[str, Any]:
    """A new session for a citizen who just signed in: a new id (no fixation) and a fresh
    CSRF token."""
    session = {"user_id": str(user_id), "sid": secrets.token_urlsafe(32)}
    csrf_token(session)
    return session


def csrf_token(session: dict[str, Any]) -> str:
    """The session's CSRF token, made on first use (the caller writes the session back)."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return str(session["csrf"])


def csrf_ok(session: dict[str, Any], submitted: str | None) -> bool:
    expected = session.get("csrf")
    return bool(expected and submitted) and secrets.compare_digest(str(expected), str(submitted))


def _digest(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()
