"""Which citizen an agency means: the pseudonym agencies address notices to.

Agencies know people by CI (연계정보), which must not travel with a notice; both sides
derive `base64url(HMAC-SHA256(linking key, CI))` instead (docs/upstreams/agencynotice.md).
The hub derives it when a citizen's app passes on the CI its identity check gave
(`linkNoticeIdentity`), keeps the pseudonym against the citizen's account and drops the CI.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid

import asyncpg

from resolvers.notices import errors


def ref_of(ci: str, linking_key: bytes) -> str:
    digest = hmac.new(linking_key, ci.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def link(
    conn: asyncpg.Connection | asyncpg.Pool, user_id: uuid.UUID, ci: str, linking_key: bytes
) -> str:
    """Record the citizen's pseudonym (again: safe to repeat); refused if another account
    holds it. Returns the pseudonym."""
    if not 1 <= len(ci) <= 200:
        raise errors.IdentityInvalid("ci is the 연계정보 of the citizen's identity check")
    ref = ref_of(ci, linking_key)
    try:
        await conn.execute(
            "INSERT INTO notice_citizen_refs (citizen_ref, user_id) VALUES ($1, $2)"
            " ON CONFLICT (user_id) DO UPDATE SET citizen_ref = EXCLUDED.citizen_ref,"
            " linked_at = now()",
            ref,
            user_id,
        )
    except asyncpg.UniqueViolationError:
        raise errors.IdentityInvalid("this identity is linked to another account") from None
    return ref
