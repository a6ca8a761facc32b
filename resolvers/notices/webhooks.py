"""Apps' webhooks: where each app receives its citizens' notices, and the secrets it checks
them with.

Registering gives the app its first secret; rotating makes a new one and keeps the old one
valid for the overlap (deliveries are signed with both meanwhile), so the app can switch
without missing a notice. Both calls take an idempotency key: a retry with the same key
answers the same secret instead of making another.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import asyncpg

from resolvers.notices import errors, signing

LOOPBACK_NAMES = ("localhost",)
MAX_BATCH = 100


@dataclass(frozen=True, slots=True)
class Webhook:
    client_id: str
    url: str
    secret: bytes
    previous_secret: bytes | None
    previous_until: datetime | None
    secret_key: str
    registered_at: datetime
    rotated_at: datetime
    max_batch: int  # notices one request may carry (1: one per request)

    def valid_secrets(self, now: datetime) -> list[bytes]:
        """The secrets a delivery is signed with at `now`: the current one first."""
        found = [self.secret]
        if self.previous_secret and self.previous_until and now < self.previous_until:
            found.append(self.previous_secret)
        return found


def check_url(url: str) -> str:
    """An https URL (http only to this machine, for development) without credentials."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise errors.WebhookUrlInvalid("the webhook is an https:// URL", argument="url")
    if parts.username or parts.password or parts.fragment:
        raise errors.WebhookUrlInvalid(
            "the webhook URL carries no credentials or fragment", argument="url"
        )
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise errors.WebhookUrlInvalid(
            "the webhook must use https:// (http:// only to 127.0.0.1 or localhost)",
            argument="url",
        )
    return url


def _loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def register(
    conn: asyncpg.Connection | asyncpg.Pool,
    client_id: str,
    url: str,
    key: str,
    max_batch: int | None = None,
    default_max_batch: int = 50,
) -> Webhook:
    """Set the app's webhook URL (and batch size); a new app gets its first secret. An app
    registered before keeps its secrets (rotate to change them) and, when `max_batch` is
    None, its batch size; a new one without it gets `default_max_batch`."""
    for value in (max_batch, default_max_batch):
        if value is not None and not 1 <= value <= MAX_BATCH:
            raise errors.WebhookUrlInvalid(f"maxBatch: 1 to {MAX_BATCH}", argument="maxBatch")
    row = await conn.fetchrow(
        "INSERT INTO notice_webhooks (client_id, url, secret, secret_key, max_batch)"
        " VALUES ($1, $2, $3, $4, coalesce($5::int, $6::int)) ON CONFLICT (client_id) DO UPDATE"
        " SET url = EXCLUDED.url, max_batch = coalesce($5::int, notice_webhooks.max_batch)"
        " RETURNING *",
        client_id,
        check_url(url),
        signing.new_secret(),
        key,
        max_batch,
        default_max_batch,
    )
    return Webhook(**dict(row))


async def rotate(
    conn: asyncpg.Connection | asyncpg.Pool, client_id: str, key: str, overlap: timedelta
) -> Webhook:
    """A new secret; the current one stays valid for `overlap`. The same key again
    answers the secret that key made."""
    row = await conn.fetchrow(
        "UPDATE notice_webhooks SET previous_secret = secret, previous_until = now() + $3,"
        " secret = $4, secret_key = $2, rotated_at = now()"
        " WHERE client_id = $1 AND secret_key <> $2 RETURNING *",
        client_id,
        key,
        overlap,
        signing.new_secret(),
    )
    if row is None:
        found = await of_app(conn, client_id)
        if found is None:
            raise errors.NoWebhook("register a webhook first")
        return found  # this key made the current secret: the retry gets it again
    return Webhook(**dict(row))


async def of_app(conn: asyncpg.Connection | asyncpg.Pool, client_id: str) -> Webhook | None:
    row = await conn.fetchrow("SELECT * FROM notice_webhooks WHERE client_id = $1", client_id)
    return None if row is None else Webhook(**dict(row))


async def of_apps(
    conn: asyncpg.Connection | asyncpg.Pool, client_ids: list[str]
) -> dict[str, Webhook]:
    rows = await conn.fetch(
        "SELECT * FROM notice_webhooks WHERE client_id = ANY($1::text[])", client_ids
    )
    return {row["client_id"]: Webhook(**dict(row)) for row in rows}
