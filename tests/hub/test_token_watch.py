"""Subscriptions end with their token: many subscriptions on one token are checked
together, once a tick, and each still ends when the token is revoked or expires."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from hub.core.caller import Caller
from hub.core.errors import Unauthenticated
from schema import extensions
from schema.extensions import RECHECK_SECONDS, TokenWatch


class Tokens:
    """A verifier as the hub's rechecker behaves: the caller, or None once revoked."""

    def __init__(self, expires_at: datetime) -> None:
        self.caller = Caller(
            client_id="app", scopes=frozenset({"sensors:read"}), expires_at=expires_at
        )
        self.revoked: set[str] = set()
        self.checks = 0

    def verify(self, token: str) -> Caller | None:
        self.checks += 1
        return None if token in self.revoked else self.caller


async def quiet() -> AsyncIterator[int]:
    """A subscription no event comes to."""
    await asyncio.Event().wait()
    yield 0  # pragma: no cover


async def ended(watch: TokenWatch) -> Exception:
    with pytest.raises(Unauthenticated) as raised:
        async for _ in watch.events(quiet()):
            pass
    return raised.value


@pytest.mark.parametrize("per_turn", [200, 7])  # a tick's checks spread over turns
async def test_subscriptions_on_one_token_are_checked_once_a_tick_and_end_together(
    per_turn: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(extensions, "CHECKS_PER_TURN", per_turn)
    later = datetime.now(UTC) + timedelta(hours=1)
    tokens = Tokens(later)
    watches = [TokenWatch("t", tokens.verify, later) for _ in range(50)]
    other = TokenWatch("u", tokens.verify, later)
    running = [asyncio.create_task(ended(w)) for w in watches]
    untouched = asyncio.create_task(ended(other))
    try:
        await asyncio.sleep(RECHECK_SECONDS * 2.5)
        assert tokens.checks <= 2 * 3  # two tokens, two or three ticks: not one per watch
        tokens.revoked.add("t")
        errors = await asyncio.wait_for(asyncio.gather(*running), RECHECK_SECONDS * 10)
        assert all("revoked" in str(e) for e in errors)
        assert not untouched.done()  # another token's subscription goes on
    finally:
        untouched.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await untouched


async def test_a_subscription_ends_at_its_tokens_expiry_between_ticks() -> None:
    soon = datetime.now(UTC) + timedelta(seconds=RECHECK_SECONDS / 4)
    tokens = Tokens(soon)
    error = await asyncio.wait_for(ended(TokenWatch("t", tokens.verify, soon)), 10)
    assert "expired" in str(error)
    assert tokens.checks == 1  # by its own timer, at expiry: no tick came first


class VersionedTokens(Tokens):
    """A verifier that says when a check could answer otherwise, as the hub's does."""

    def __init__(self, expires_at: datetime) -> None:
        super().__init__(expires_at)
        self.version = 0

    def __call__(self, token: str) -> Caller | None:
        return self.verify(token)

    def standing(self) -> tuple[int, bool]:
        return self.version, False


async def test_tokens_are_checked_again_only_once_their_verifier_changed() -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    tokens = VersionedTokens(later)
    watches = [TokenWatch(f"t{i % 2}", tokens, later) for i in range(50)]
    running = [asyncio.create_task(ended(w)) for w in watches]
    await asyncio.sleep(RECHECK_SECONDS * 3.5)
    assert tokens.checks == 2  # each token at the first tick, none since

    tokens.revoked.add("t0")
    await asyncio.sleep(RECHECK_SECONDS * 1.5)
    assert not any(task.done() for task in running)  # unseen until the verifier moves on
    tokens.version += 1
    errors = await asyncio.wait_for(asyncio.gather(*running[::2]), RECHECK_SECONDS * 10)
    assert all("revoked" in str(e) for e in errors)
    assert not any(task.done() for task in running[1::2])
    for task in running[1::2]:
        task.cancel()
    await asyncio.gather(*running[1::2], return_exceptions=True)
