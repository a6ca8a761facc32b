"""Idempotency keys for the payments mutations a client may retry (Stripe's semantics).

The first answer to a key, success or refusal, is stored and every retry with the same key
gets it again, however often and however concurrently it is sent; the same key with a
different request is refused with IDEMPOTENCY_KEY_REUSED; keys are kept for
`IEUM_PAYMENTS_IDEMPOTENCY_KEY_HOURS` (24 h by default) and per client.

Concurrent requests with one key queue on a PostgreSQL advisory lock held by the first
for the whole operation, on the connection the operation itself uses. The lock goes with
its connection, so a hub killed mid-operation leaves no stale claim: the retry after the
restart runs the operation again, which is safe because every operation resumes from the
payment's stored state (a confirm in flight is looked up, never sent anew with a new key).
A failure that is not an answer (the database or the process gave out, or an upstream
did not answer: UPSTREAM_UNAVAILABLE) stores nothing, so the retry runs again.

Two round trips a request besides the operation's own: the lock, the stored answer's
lookup and the key's claim for this request in one (`payment_idempotency_lock`, 0035);
the answer stored and the lock released in one (`payment_idempotency_answer`, 0033),
whose transaction keeps the lock until its commit: a waiter let in before that commit
would find no answer and run the operation a second time. A request that gets no answer
only releases the lock. A terminal's request (`once_as_terminal`) has its terminal read
and checked in the first of them: a terminal not enrolled or disabled is refused before
any lock is taken or key claimed, as it was by a read of its own before.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

import asyncpg
import orjson

from hub.core.errors import BadUserInput, IeumError, UpstreamUnavailable
from resolvers.payments import errors, terminals
from resolvers.payments.terminals import Terminal

Answer = dict[str, Any]
Operation = Callable[[asyncpg.Connection], Awaitable[Answer]]
TerminalOperation = Callable[[asyncpg.Connection, Terminal], Awaitable[Answer]]
MAX_KEY_LENGTH = 255


def _lock_id(owner: str, key: str) -> int:
    digest = hashlib.blake2b(f"{owner}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def request_hash(operation: str, request: Mapping[str, Any]) -> str:
    body = orjson.dumps({"operation": operation, "request": request}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(body).hexdigest()


def check_key(key: str) -> None:
    if not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise BadUserInput(
            f"idempotencyKey must be 1 to {MAX_KEY_LENGTH} characters (a UUID v4 is ideal)",
            argument="idempotencyKey",
        )


async def once(
    pool: asyncpg.Pool,
    *,
    owner: str,
    key: str,
    operation: str,
    request: Mapping[str, Any],
    keep: timedelta,
    run: Operation,
) -> Answer:
    """`run(conn)`'s answer for the first request with this key; the stored one after."""

    async def anyone(conn: asyncpg.Connection, _: Terminal | None) -> Answer:
        return await run(conn)

    return await _once(pool, None, owner, key, operation, request, keep, anyone)


async def once_as_terminal(
    pool: asyncpg.Pool,
    *,
    terminal_id: str,
    key: str,
    operation: str,
    request: Mapping[str, Any],
    keep: timedelta,
    run: TerminalOperation,
) -> Answer:
    """`once` for a terminal's request (its own client id the key's owner): TerminalNotEnrolled
    or TerminalDisabled before anything else, else `run(conn, terminal)`'s answer for the
    first request with this key, the stored one after."""

    async def checked(conn: asyncpg.Connection, terminal: Terminal | None) -> Answer:
        assert terminal is not None
        return await run(conn, terminal)

    return await _once(pool, terminal_id, terminal_id, key, operation, request, keep, checked)


async def _once(
    pool: asyncpg.Pool,
    terminal_id: str | None,
    owner: str,
    key: str,
    operation: str,
    request: Mapping[str, Any],
    keep: timedelta,
    run: Callable[[asyncpg.Connection, Terminal | None], Awaitable[Answer]],
) -> Answer:
    check_key(key)
    digest = request_hash(operation, request)
    lock = _lock_id(owner, key)
    async with pool.acquire() as conn:
        locked = True  # once the call is sent: it may hold the lock however it ends
        try:
            row = await conn.fetchrow(
                "SELECT locked, terminal, operation, request_hash, response"
                " FROM payment_idempotency_lock($1, $2, $3, $4, $5, $6, $7)",
                lock,
                owner,
                key,
                operation,
                digest,
                keep,
                terminal_id,
            )
            terminal = terminals.from_row(row["terminal"])
            if not row["locked"]:  # a terminal refused: no lock taken, no key claimed
                locked = False
                terminals.usable(terminal)
                raise AssertionError("payment_idempotency_lock refused an active terminal")
            stored = _stored(row, digest)
            if stored is not None:
                return _replay(stored)
            try:
                answer = await run(conn, terminal)
            except UpstreamUnavailable:
                raise  # not an answer: the retry with this key tries the upstream again
            except IeumError as exc:
                await _answer(conn, lock, owner, key, {"error": _error_json(exc)})
                locked = False
                raise
            await _answer(conn, lock, owner, key, {"ok": answer})
            locked = False
            return answer
        finally:
            if locked:  # no answer stored (or storing it failed): only the lock goes
                with contextlib.suppress(asyncpg.PostgresError, OSError):
                    await conn.execute("SELECT pg_advisory_unlock($1)", lock)


def _stored(row: asyncpg.Record, digest: str) -> dict[str, Any] | None:
    """With the key's lock held: its stored answer, or None when this request runs (the
    key claimed for it now, or by a run of it that died with its process)."""
    if row["request_hash"] is None:
        return None  # claimed now: a new key, or one expired
    if row["request_hash"] != digest:
        raise errors.IdempotencyKeyReused(
            f"this idempotencyKey was used for another {row['operation']} request; "
            "use a new key for a new request",
        )
    if row["response"] is not None:
        return dict(row["response"])
    return None  # claimed by a run that died with its process: run again


async def _answer(
    conn: asyncpg.Connection, lock: int, owner: str, key: str, response: Answer
) -> None:
    """Store the answer and release the key's lock, let go only at the commit (0033)."""
    await conn.execute(
        "SELECT payment_idempotency_answer($1, $2, $3, $4)", lock, owner, key, response
    )


def _error_json(exc: IeumError) -> dict[str, Any]:
    return {"message": str(exc), "extensions": exc.extensions}


def _replay(stored: Mapping[str, Any]) -> Answer:
    if "error" in stored:
        error = stored["error"]
        replayed = _replayed(str(error["extensions"]["code"]))
        raise replayed(error["message"], **{**error["extensions"], "replayed": True})
    return dict(stored["ok"])


class Replayed(IeumError):
    """A refusal given before to the same key, given again with its original code."""


@functools.cache
def _replayed(code: str) -> type[Replayed]:
    """The class of refusals replayed with `code`. The hub reads an error's code from its
    class: with IeumError's own, every replayed refusal was logged as our fault, with a
    traceback, and counted as INTERNAL_SERVER_ERROR."""
    return type(f"Replayed{code.title().replace('_', '')}", (Replayed,), {"code": code})


async def prune(pool: asyncpg.Pool) -> int:
    """Forget expired keys; returns how many."""
    status = await pool.execute("DELETE FROM payment_idempotency_keys WHERE expires_at < now()")
    return int(status.split()[-1])
