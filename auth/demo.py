"""Demo data for `ieum serve`: a partner client and a citizen account to try the API with.

The partner holds every scope the installed domains declare; the domains' own demo data
(a simulated taxi fleet …) is owned by it.

Loaded once per database (idempotent) and skipped with `--no-demo`. The demo client's
secret is kept in plain text in `hub_secrets` so the banner can print it on every start:
fine for a demo, and the reason a production hub runs with `--no-demo`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import asyncpg

from auth import clients, scopes, store
from auth.identity import LocalAccounts

CLIENT_ID = "demo-partner"
CITIZEN = "demo"


@dataclass(frozen=True)
class DemoCredentials:
    client_id: str
    client_secret: str
    citizen: str
    citizen_password: str


async def load(pool: asyncpg.Pool) -> DemoCredentials:
    """Create the demo client and citizen if this database has none yet; their credentials."""
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
    if await store.get_citizen_by_username(pool, CITIZEN) is None:
        await LocalAccounts(pool).create(CITIZEN, "데모 시민", password)
    return DemoCredentials(CLIENT_ID, client_secret, CITIZEN, password)
