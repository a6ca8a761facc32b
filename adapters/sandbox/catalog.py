"""Sandboxes by name: the hub's own, then those that installed adapters bring."""

from __future__ import annotations

from collections.abc import Callable

from adapters import registry
from adapters.errors import AdapterNotFound
from adapters.sandbox.server import Sandbox

# The hub's own sandboxes of systems no installed adapter package owns, by name.
FIRST_PARTY: dict[str, Callable[[], Sandbox]] = {}


def available() -> dict[str, Sandbox]:
    sandboxes = {name: make() for name, make in FIRST_PARTY.items()}
    for adapter in registry.load_all().values():
        if adapter.sandbox is not None:
            sandboxes.setdefault(adapter.sandbox.name, adapter.sandbox)
    return sandboxes


def find(name: str) -> Sandbox:
    sandboxes = available()
    if name not in sandboxes:
        known = ", ".join(sorted(sandboxes)) or "none"
        raise AdapterNotFound(f"no sandbox named {name!r} (available: {known})")
    return sandboxes[name]


def adapter_of(sandbox: Sandbox) -> registry.Adapter | None:
    """The installed adapter that brought this sandbox, for its settings' variable names."""
    for adapter in registry.load_all().values():
        if adapter.sandbox is sandbox:
            return adapter
    return None
