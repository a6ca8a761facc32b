"""The installed domains, as the runtime sees them: loaded once, checked, and registered
with the parts of the hub that need to know them (settings sections, the scope catalog,
the PostgreSQL settings of the pools).

The runtime loops over what `installed()` returns and never names a domain.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from auth import scopes
from hub.core.db import register_server_settings
from hub.core.domain import Domain
from hub.core.settings import register_section


@functools.cache
def installed() -> dict[str, Domain]:
    """Every installed domain by name, in load order (those it requires come first)."""
    from schema.installed import DOMAINS

    found: dict[str, Domain] = {}
    for domain in DOMAINS:
        if domain.name in found:
            raise ValueError(f"domain {domain.name!r} is installed twice")
        missing = [name for name in domain.requires if name not in found]
        if missing:
            raise ValueError(
                f"domain {domain.name!r} requires {', '.join(missing)}: install "
                "them, listed before it"
            )
        found[domain.name] = domain
        if domain.settings is not None:
            register_section(domain.settings)
        scopes.register(domain.scopes)
        register_server_settings(domain.name, domain.database_settings)
    return found


def select(subgraph: str | None) -> list[Domain]:
    """The domains of a subgraph (None: all of them); unknown names are refused."""
    domains = installed()
    if subgraph is None:
        return list(domains.values())
    if subgraph not in domains:
        raise ValueError(f"unknown subgraph {subgraph!r}; choose one of: {', '.join(domains)}")
    return [domains[subgraph]]


def by_names(names: Sequence[str] | None) -> list[Domain]:
    """The named domains (None: all of them) in installed order, for processes handed a
    list of names: the order decides which domain owns a shared entity."""
    domains = installed()
    if names is None:
        return list(domains.values())
    unknown = set(names) - set(domains)
    if unknown:
        raise ValueError(f"unknown domains: {', '.join(sorted(unknown))}")
    return [domain for name, domain in domains.items() if name in names]
