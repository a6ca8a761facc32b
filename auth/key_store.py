"""SQL for sealing signing keys stored before they were sealed (auth/keys.py)."""

from __future__ import annotations

from typing import Any

import asyncpg


async def replace_plain_private(
    pool: asyncpg.Pool | asyncpg.Connection, kid: str, sealed: dict[str, Any]
) -> bool:
    """Store `kid`'s private key sealed, if it is still plain (another process may have
    sealed it meanwhile); True if this call did."""
    result = await pool.execute(
        "UPDATE oauth_signing_keys SET private_jwk = $2 WHERE kid = $1 AND private_jwk ? 'kty'",
        kid,
        sealed,
    )
    return str(result) == "UPDATE 1"
