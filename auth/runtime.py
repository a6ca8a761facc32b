"""Auth's part of a hub process: the authorization server, sessions, accounts and the
token verifier, kept on the app's state for the OAuth routes and the GraphQL endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
from starlette.datastructures import State

from auth import kek, keys
from auth.identity import LocalAccounts
from auth.oauth import AuthorizationServer
from auth.session import Sessions
from auth.throttle import SignInThrottle
from auth.tokens import AccessTokenVerifier
from hub.core.settings import Settings

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def lifespan(state: State, pool: asyncpg.Pool, settings: Settings) -> AsyncIterator[None]:
    """Sets `state.oauth`, `.sessions`, `.identity`, `.signin_throttle` and `.tokens`;
    keeps the verifier's keys and revocations, and the ended sessions, fresh while the
    process serves."""
    lifetime = timedelta(seconds=settings.access_token_seconds)
    state.oauth = AuthorizationServer(
        pool,
        issuer=settings.issuer,
        audience=settings.audience,
        access_token_lifetime=lifetime,
        refresh_token_lifetime=timedelta(seconds=settings.refresh_token_seconds),
    )
    sessions = state.sessions = Sessions(pool, secure=settings.issuer.startswith("https://"))
    state.identity = LocalAccounts(pool)
    state.signin_throttle = SignInThrottle()
    tokens = state.tokens = AccessTokenVerifier(
        pool, issuer=settings.issuer, audience=settings.audience, token_lifetime=lifetime
    )
    try:
        await tokens.refresh()
        await sessions.refresh()
        await _check_signing_key(pool, lifetime)
    except asyncpg.PostgresError as exc:  # e.g. migrations pending: /readyz says so
        log.warning("auth.tokens.not_loaded error=%r", exc)
    refreshers = [asyncio.create_task(tokens.run()), asyncio.create_task(sessions.run())]
    try:
        yield
    finally:
        for refresher in refreshers:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher


async def _check_signing_key(pool: asyncpg.Pool, lifetime: timedelta) -> None:
    """Say at start, not at the first token request, when this process cannot sign: the
    current key was sealed under another KEK. A malformed KEK setting stops the start."""
    kek.current()
    try:
        (await keys.load(pool, lifetime)).current().private_key()
    except LookupError:
        pass  # no key yet: `ieum migrate` or the first start makes one
    except kek.KekError as exc:
        log.error("auth.keys.cannot_sign %s", exc)
