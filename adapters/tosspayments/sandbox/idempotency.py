"""`Idempotency-Key` on the sandbox's POSTs, with Toss's and Stripe's semantics.

The first answer the endpoint gives under a key — success or error — is stored with a
fingerprint of the body and replayed byte for byte for the same key and body; the same
key with another body is refused. A key is scoped to the method and path (Toss scopes
it to the API key, URL and method) and kept 15 days, as Toss documents.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from adapters.tosspayments.sandbox.gateway import TossError

KEEP = timedelta(days=15)
LONGEST = 300  # characters, Toss's limit


@dataclass(frozen=True)
class Answer:
    fingerprint: str
    status: int
    body: bytes
    at: datetime


def fingerprint(raw: bytes) -> str:
    """The body's identity: its JSON written canonically, so spacing and order don't count."""
    try:
        canonical = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":"))
    except ValueError:
        return hashlib.sha256(raw).hexdigest()
    return hashlib.sha256(canonical.encode()).hexdigest()


class Keys:
    def __init__(self, now: Callable[[], datetime]) -> None:
        self.now = now
        self._answers: dict[tuple[str, str, str], Answer] = {}

    def replay(self, method: str, path: str, key: str, body: bytes) -> Answer | None:
        """The stored answer to repeat, None for a new key; TossError for a key misused."""
        if not 0 < len(key) <= LONGEST:
            raise TossError(400, "INVALID_REQUEST", f"멱등키는 1자 이상 {LONGEST}자 이하입니다.")
        stored = self._answers.get((method, path, key))
        if stored is None or self.now() - stored.at > KEEP:
            return None
        if stored.fingerprint != fingerprint(body):
            raise TossError(
                422,
                "IDEMPOTENCY_KEY_REUSED",
                "같은 멱등키로 다른 요청 본문을 보낼 수 없습니다. 새 멱등키를 사용해주세요.",
            )
        return stored

    def store(
        self, method: str, path: str, key: str, request: bytes, status: int, body: bytes
    ) -> None:
        self._answers[(method, path, key)] = Answer(fingerprint(request), status, body, self.now())
