"""Webhook signatures, the Standard Webhooks way (standardwebhooks.com).

Each request carries `webhook-id` (the delivery's event id, the same on every attempt:
receivers drop repeats by it), `webhook-timestamp` (unix seconds of this attempt) and
`webhook-signature`: `v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>`, one per
valid secret, space-separated (two while a rotation overlaps). Secrets are shown as
`whsec_<base64>`; the HMAC key is the decoded bytes. Receivers refuse timestamps more than
five minutes from their clock, which stops replays of a captured request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping, Sequence

PREFIX = "whsec_"
SECRET_BYTES = 32
TOLERANCE_SECONDS = 5 * 60


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def shown(secret: bytes) -> str:
    """The secret as the app copies it: `whsec_<base64>`."""
    return PREFIX + base64.b64encode(secret).decode()


def key_of(text: str) -> bytes:
    """The HMAC key of a `whsec_…` secret."""
    return base64.b64decode(text.removeprefix(PREFIX), validate=True)


def signature(secret: bytes, event_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{event_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(
    secrets_: Sequence[bytes], event_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The three headers of one attempt, signed with every valid secret."""
    at = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(at),
        "webhook-signature": " ".join(signature(s, event_id, at, body) for s in secrets_),
        "content-type": "application/json",
    }


class InvalidSignature(Exception):
    """The request was not signed with the secret, or is too old or too new."""


def verify(
    secret: bytes, body: bytes, request_headers: Mapping[str, str], now: float | None = None
) -> str:
    """Check a received request as an app would; its event id, or InvalidSignature."""
    try:
        event_id = request_headers["webhook-id"]
        timestamp = int(request_headers["webhook-timestamp"])
        signatures = request_headers["webhook-signature"].split()
    except (KeyError, ValueError):
        raise InvalidSignature("missing or malformed webhook headers") from None
    clock = time.time() if now is None else now
    if abs(clock - timestamp) > TOLERANCE_SECONDS:
        raise InvalidSignature("timestamp more than five minutes off: a replay or a bad clock")
    expected = signature(secret, event_id, timestamp, body)
    if not any(hmac.compare_digest(expected, given) for given in signatures):
        raise InvalidSignature("no signature matches the secret")
    return event_id
