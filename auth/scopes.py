"""The scope catalog: every OAuth scope a client can hold, explained for the consent page.

Filled from the installed domains' manifests when the hub loads them."""

from __future__ import annotations

from collections.abc import Iterable

from hub.core.domain import ScopeInfo

# Scopes the platform itself grants; each domain declares its own in its manifest.
PROFILE = ScopeInfo(
    "profile", "회원님의 이름과 계정 정보를 봅니다.", "See your name and account.", citizen=True
)

CATALOG: dict[str, ScopeInfo] = {PROFILE.name: PROFILE}


def register(scopes: Iterable[ScopeInfo]) -> None:
    """Add a domain's scopes to the catalog; a name declared twice differently is a bug."""
    for scope in scopes:
        known = CATALOG.setdefault(scope.name, scope)
        if known != scope:
            raise ValueError(f"scope {scope.name!r} is declared twice, differently")


def names() -> list[str]:
    """Every scope a client may hold, as registered by the installed domains."""
    return sorted(CATALOG)


def citizen_names() -> list[str]:
    """Scopes a citizen grants to an app on the consent page."""
    return sorted(name for name, info in CATALOG.items() if info.citizen)


class UnknownScope(ValueError):
    pass


def parse(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """Scopes from a space- or comma-separated string (or a list); unknown names refused."""
    wanted = text.replace(",", " ").split() if isinstance(text, str) else list(text)
    unknown = [name for name in wanted if name not in CATALOG]
    if unknown:
        raise UnknownScope(f"unknown scope(s): {', '.join(unknown)}; known: {', '.join(names())}")
    return sorted(set(wanted))


def satisfies(held: frozenset[str], required: list[list[str]]) -> bool:
    """Apollo's reading of @requiresScopes: any one inner list, all of its scopes."""
    return any(all(scope in held for scope in group) for group in required)
