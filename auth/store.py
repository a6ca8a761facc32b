"""All SQL of the authorization server: clients, citizens, grants, codes, tokens, keys.

Secrets that authenticate (client secrets, codes, refresh tokens) are stored as SHA-256
hashes: they are long random strings, so a fast hash is enough and a leaked table gives
nothing usable. Citizens' passwords are low-entropy and use argon2 (auth/identity.py).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# Clients


async def insert_client(conn: asyncpg.Connection | asyncpg.Pool, **client: Any) -> None:
    await conn.execute(
        "INSERT INTO oauth_clients (client_id, name, auth_method, secret_hash, jwks,"
        " redirect_uris, scopes, grant_types) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        client["client_id"],
        client["name"],
        client["auth_method"],
        client.get("secret_hash"),
        client.get("jwks"),
        client.get("redirect_uris", []),
        client["scopes"],
        client["grant_types"],
    )


async def get_client(pool: asyncpg.Pool, client_id: str) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT * FROM oauth_clients WHERE client_id = $1", client_id)


async def list_clients(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM oauth_clients ORDER BY created_at, client_id")


async def disable_client(pool: asyncpg.Pool, client_id: str) -> bool:
    """Disable the client and revoke every grant it holds; False if there is no such client."""
    async with pool.acquire() as conn, conn.transaction():
        found = await conn.fetchval(
            "UPDATE oauth_clients SET disabled_at = coalesce(disabled_at, now())"
            " WHERE client_id = $1 RETURNING true",
            client_id,
        )
        if found:
            grants = await conn.fetch(
                "SELECT grant_id FROM oauth_grants WHERE client_id = $1 AND revoked_at IS NULL",
                client_id,
            )
            for grant in grants:
                await _revoke_grant(conn, grant["grant_id"])
        return bool(found)


async def set_client_secret(pool: asyncpg.Pool, client_id: str, secret_hash: str) -> bool:
    result = await pool.execute(
        "UPDATE oauth_clients SET secret_hash = $2"
        " WHERE client_id = $1 AND auth_method = 'client_secret'",
        client_id,
        secret_hash,
    )
    return result == "UPDATE 1"


# Citizens


async def insert_citizen(
    pool: asyncpg.Pool, username: str, display_name: str, password_hash: str
) -> uuid.UUID:
    user_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO citizens (user_id, username, display_name, password_hash)"
        " VALUES ($1, $2, $3, $4)",
        user_id,
        username,
        display_name,
        password_hash,
    )
    return user_id


async def get_citizen(pool: asyncpg.Pool, user_id: uuid.UUID) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT * FROM citizens WHERE user_id = $1 AND disabled_at IS NULL", user_id
    )


async def get_citizen_by_username(pool: asyncpg.Pool, username: str) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT * FROM citizens WHERE username = $1 AND disabled_at IS NULL", username
    )


async def set_password_hash(pool: asyncpg.Pool, user_id: uuid.UUID, password_hash: str) -> None:
    await pool.execute(
        "UPDATE citizens SET password_hash = $2 WHERE user_id = $1", user_id, password_hash
    )


# Grants, codes and tokens


async def insert_grant(
    pool: asyncpg.Pool, client_id: str, user_id: uuid.UUID | None, scope: str
) -> uuid.UUID:
    grant_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO oauth_grants (grant_id, client_id, user_id, scope) VALUES ($1, $2, $3, $4)",
        grant_id,
        client_id,
        user_id,
        scope,
    )
    return grant_id


async def insert_code(pool: asyncpg.Pool, code: str, grant_id: uuid.UUID, **fields: Any) -> None:
    await pool.execute(
        "INSERT INTO oauth_codes (code_hash, grant_id, client_id, user_id, redirect_uri, scope,"
        " code_challenge, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        digest(code),
        grant_id,
        fields["client_id"],
        fields["user_id"],
        fields["redirect_uri"],
        fields["scope"],
        fields["code_challenge"],
        fields["expires_at"],
    )


async def take_code(pool: asyncpg.Pool, code: str, client_id: str) -> asyncpg.Record | None:
    """Use a code once. A code used before revokes the tokens issued from it (RFC 6749 4.1.2)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "UPDATE oauth_codes SET used_at = now() WHERE code_hash = $1 AND client_id = $2"
            " AND used_at IS NULL AND expires_at > now() RETURNING *",
            digest(code),
            client_id,
        )
        if row is not None:
            return row
        replayed = await conn.fetchval(
            "SELECT grant_id FROM oauth_codes WHERE code_hash = $1 AND used_at IS NOT NULL",
            digest(code),
        )
        if replayed is not None:
            await _revoke_grant(conn, replayed)
        return None


async def insert_access_token(pool: asyncpg.Pool, **token: Any) -> None:
    await pool.execute(
        "INSERT INTO oauth_access_tokens (jti, grant_id, client_id, user_id, scope, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        token["jti"],
        token["grant_id"],
        token["client_id"],
        token["user_id"],
        token["scope"],
        token["expires_at"],
    )


async def insert_refresh_token(pool: asyncpg.Pool, refresh_token: str, **token: Any) -> None:
    await pool.execute(
        "INSERT INTO oauth_refresh_tokens (token_hash, grant_id, client_id, user_id, scope,"
        " expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        digest(refresh_token),
        token["grant_id"],
        token["client_id"],
        token["user_id"],
        token["scope"],
        token["expires_at"],
    )


async def find_token(pool: asyncpg.Pool, token: str, jti: str | None) -> asyncpg.Record | None:
    """An access token (by its jti) or a refresh token (by its hash), with its kind."""
    if jti is not None:
        row = await pool.fetchrow(
            "SELECT 'access_token' AS kind, t.*, g.revoked_at AS grant_revoked_at"
            " FROM oauth_access_tokens t JOIN oauth_grants g USING (grant_id) WHERE t.jti = $1",
            jti,
        )
        if row is not None:
            return row
    return await pool.fetchrow(
        "SELECT 'refresh_token' AS kind, t.*, g.revoked_at AS grant_revoked_at"
        " FROM oauth_refresh_tokens t JOIN oauth_grants g USING (grant_id)"
        " WHERE t.token_hash = $1",
        digest(token),
    )


async def revoke_grant(pool: asyncpg.Pool, grant_id: uuid.UUID) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await _revoke_grant(conn, grant_id)


async def revoke_access_token(pool: asyncpg.Pool, jti: str) -> None:
    await pool.execute(
        "UPDATE oauth_access_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE jti = $1",
        jti,
    )


async def _revoke_grant(conn: asyncpg.Connection, grant_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE oauth_grants SET revoked_at = coalesce(revoked_at, now()) WHERE grant_id = $1",
        grant_id,
    )
    for table in ("oauth_access_tokens", "oauth_refresh_tokens"):
        await conn.execute(
            f"UPDATE {table} SET revoked_at = coalesce(revoked_at, now())"
            " WHERE grant_id = $1 AND revoked_at IS NULL",
            grant_id,
        )


async def revoked_access_tokens(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """Every unexpired access token that is revoked, itself or through its grant.

    Read whole each time (access tokens live minutes, so the set stays small): reading
    only "revoked since the last look" would miss a revocation whose transaction started
    before, and committed after, a newer one was seen.
    """
    return await pool.fetch(
        "SELECT t.jti, t.expires_at FROM oauth_access_tokens t JOIN oauth_grants g"
        " USING (grant_id) WHERE (t.revoked_at IS NOT NULL OR g.revoked_at IS NOT NULL)"
        " AND t.expires_at > now()"
    )


async def insert_tokens_unless_revoked(
    pool: asyncpg.Pool,
    access: dict[str, Any],
    refresh_token: str | None,
    refresh_expires_at: datetime,
    refresh_scope: str,
    replaces: str | None = None,
    grace: timedelta = timedelta(0),
) -> bool:
    """Record newly issued tokens, unless their grant was revoked meanwhile (a concurrent
    replay of the code or refresh token that produced them); False then.

    `replaces` is the refresh token they were issued for. It is used up in the same
    transaction, so it is spent exactly when its successors exist, and a request that
    presented it at the same time waits here and then finds it used: the tokens are then
    stored only if that reuse is forgiven (`forgive_reuse`), else the grant is revoked.
    """
    async with pool.acquire() as conn, conn.transaction():
        # The grant first, then its tokens: the order _revoke_grant locks them in.
        revoked = await conn.fetchval(
            "SELECT revoked_at IS NOT NULL FROM oauth_grants WHERE grant_id = $1 FOR UPDATE",
            access["grant_id"],
        )
        if revoked:
            return False
        if replaces is not None and not await _use_refresh_token(conn, replaces, access, grace):
            return False
        await insert_access_token(conn, **access)
        if refresh_token:
            await insert_refresh_token(
                conn,
                refresh_token,
                **(access | {"expires_at": refresh_expires_at, "scope": refresh_scope}),
            )
        return True


async def forgive_reuse(
    pool: asyncpg.Pool, refresh_token: str, client_id: str, scope: str, grace: timedelta
) -> bool:
    """Whether a refresh token that was used already may be used again: within `grace`
    of its first use, by its own client, for the access scope that use got (the same
    request sent twice: two tabs refreshing at once, or a retry after a lost answer).
    Any other reuse is what rotation exists to detect, and revokes the whole grant."""
    async with pool.acquire() as conn, conn.transaction():
        return await _forgive_reuse(conn, refresh_token, client_id, scope, grace)


async def _use_refresh_token(
    conn: asyncpg.Connection, refresh_token: str, access: dict[str, Any], grace: timedelta
) -> bool:
    used = await conn.fetchval(
        "UPDATE oauth_refresh_tokens SET used_at = now() WHERE token_hash = $1"
        " AND client_id = $2 AND used_at IS NULL AND revoked_at IS NULL"
        " AND expires_at > now() RETURNING true",
        digest(refresh_token),
        access["client_id"],
    )
    if used:
        return True
    return await _forgive_reuse(conn, refresh_token, access["client_id"], access["scope"], grace)


async def _forgive_reuse(
    conn: asyncpg.Connection, refresh_token: str, client_id: str, scope: str, grace: timedelta
) -> bool:
    # The first use stored its access token in the transaction that set used_at, so
    # that token (issued_at = used_at) holds the scope the first request got.
    row = await conn.fetchrow(
        "SELECT grant_id, used_at IS NOT NULL AS used,"
        " client_id = $2 AND revoked_at IS NULL AND used_at > now() - $3::interval"
        " AND EXISTS (SELECT FROM oauth_access_tokens a WHERE a.grant_id = t.grant_id"
        " AND a.issued_at >= t.used_at AND a.scope = $4) AS forgiven"
        " FROM oauth_refresh_tokens t WHERE token_hash = $1",
        digest(refresh_token),
        client_id,
        grace,
        scope,
    )
    if row is None or not row["used"]:  # unknown, or expired or revoked unused
        return False
    if row["forgiven"]:
        return True
    await _revoke_grant(conn, row["grant_id"])
    return False


async def use_assertion_jti(
    pool: asyncpg.Pool, client_id: str, jti: str, expires_at: datetime
) -> bool:
    """Record a client assertion's jti; False if it was seen before (a replay)."""
    await pool.execute("DELETE FROM oauth_assertion_jtis WHERE expires_at < now()")
    inserted = await pool.fetchval(
        "INSERT INTO oauth_assertion_jtis (client_id, jti, expires_at) VALUES ($1, $2, $3)"
        " ON CONFLICT DO NOTHING RETURNING true",
        client_id,
        jti,
        expires_at,
    )
    return bool(inserted)


# Signing keys and hub secrets


async def signing_keys(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM oauth_signing_keys ORDER BY signs_from, created_at")


async def insert_signing_key(pool: asyncpg.Pool | asyncpg.Connection, **key: Any) -> None:
    await pool.execute(
        "INSERT INTO oauth_signing_keys (kid, alg, private_jwk, public_jwk, signs_from)"
        " VALUES ($1, $2, $3, $4, $5)",
        key["kid"],
        key["alg"],
        key["private_jwk"],
        key["public_jwk"],
        key["signs_from"],
    )


async def hub_secret(pool: asyncpg.Pool, name: str, new_value: str) -> str:
    """The secret `name`, created with `new_value` by whichever replica asks first."""
    await pool.execute(
        "INSERT INTO hub_secrets (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        name,
        new_value,
    )
    return await pool.fetchval("SELECT value FROM hub_secrets WHERE name = $1", name)
