"""Who a citizen is: local accounts today, behind an interface a government IdP can take."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import anyio
import anyio.to_thread
import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from auth import store
from auth.models import Citizen

T = TypeVar("T")
_hasher = PasswordHasher()
# Verified against when the username is unknown, so both cases take as long.
_DUMMY_HASH = _hasher.hash("not a password of anyone")
# Hashes run in threads of their own (not the ones authlib's OAuth requests run in), at
# most this many at once: each takes 64 MiB and `parallelism` lanes of CPU for tens of
# milliseconds, and unbounded, 8 sign-ins at once took every core from the rest of the hub
# (/oauth/token went from 6 to 612 ms).
HASHES_AT_ONCE = max(1, (os.cpu_count() or 1) // _hasher.parallelism)
HASHING = anyio.CapacityLimiter(HASHES_AT_ONCE)


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    return await anyio.to_thread.run_sync(fn, *args, limiter=HASHING)


class IdentityProvider(Protocol):
    """Signs citizens in. Swap LocalAccounts for a government identity provider here."""

    async def authenticate(self, username: str, password: str) -> Citizen | None: ...

    async def get(self, user_id: uuid.UUID) -> Citizen | None: ...


class LocalAccounts:
    """Accounts in our own `citizens` table, passwords hashed with argon2id."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(self, username: str, display_name: str, password: str) -> Citizen:
        if len(password) < 8:
            raise ValueError("a password needs at least 8 characters")
        password_hash = await _in_thread(_hasher.hash, password)
        user_id = await store.insert_citizen(self.pool, username, display_name, password_hash)
        return Citizen(user_id, username, display_name)

    async def authenticate(self, username: str, password: str) -> Citizen | None:
        row = await store.get_citizen_by_username(self.pool, username)
        stored = row["password_hash"] if row else _DUMMY_HASH
        try:
            await _in_thread(_hasher.verify, stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None:
            return None
        if _hasher.check_needs_rehash(stored):
            new_hash = await _in_thread(_hasher.hash, password)
            await store.set_password_hash(self.pool, row["user_id"], new_hash)
        return Citizen(row["user_id"], row["username"], row["display_name"])

    async def get(self, user_id: uuid.UUID) -> Citizen | None:
        row = await store.get_citizen(self.pool, user_id)
        return Citizen(row["user_id"], row["username"], row["display_name"]) if row else None
