"""Who is calling: the identity the request context carries to every resolver."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Caller:
    """A token's claims, or nobody (open data only) when the request carries no token."""

    client_id: str | None = None
    user_id: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    expires_at: datetime | None = None

    @property
    def anonymous(self) -> bool:
        return self.client_id is None


ANONYMOUS = Caller()
