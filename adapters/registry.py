"""Installed adapters, found through the `ieum.adapters` entry-point group.

A package declares its adapter in its own pyproject.toml:

    [project.entry-points."ieum.adapters"]
    airkorea = "ieum_airkorea:adapter"

The entry point names an `Adapter`. Loading is strict: an entry point that fails to import
or declares something malformed raises AdapterLoadError naming it, so the hub does not
start with a plugin silently missing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from adapters.errors import AdapterLoadError, AdapterNotFound
from adapters.kinds import PROTOCOLS, Connection, Kind
from adapters.resilience import REQUEST_DEADLINE_SECONDS, Policy
from adapters.sandbox.server import Sandbox

GROUP = "ieum.adapters"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class AdapterSettings(BaseSettings):
    """Base of every adapter's settings; a subclass sets env_prefix="IEUM_<NAME>_"."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    timeout_seconds: float = Field(
        default=3.0,
        gt=0,
        lt=REQUEST_DEADLINE_SECONDS,
        description="Time budget of one call to the upstream, retries included.",
    )
    concurrency: int = Field(
        default=8,
        ge=1,
        le=1000,
        description="Calls in flight to the upstream at once, per hub process; more wait"
        " (within their time budget). Raise it for a system that takes the load.",
    )

    def policy(self) -> Policy:
        """The resilience policy these settings ask for."""
        return Policy(
            budget=self.timeout_seconds,
            attempt_timeout=self.timeout_seconds / 2,
            concurrency=self.concurrency,
        )


S = TypeVar("S", bound=AdapterSettings)


@dataclass(frozen=True)
class Adapter(Generic[S]):
    """What an adapter package declares. `build` gets validated settings."""

    name: str
    kind: Kind
    summary: str
    settings: type[S]
    build: Callable[[S], Connection]
    sandbox: Sandbox | None = None

    @property
    def env_prefix(self) -> str:
        return f"IEUM_{self.name.upper()}_"

    def read_settings(self, **values: Any) -> S:
        """Settings from IEUM_<NAME>_* variables, `values` taking precedence."""
        return self.settings(**values)

    def connect(self, settings: S) -> Connection:
        """Build the adapter and check it offers its kind's calls."""
        built = self.build(settings)
        protocol = PROTOCOLS[self.kind]
        if not isinstance(built, protocol):
            raise AdapterLoadError(
                f"adapter {self.name!r} built a {type(built).__name__}, which lacks the calls "
                f"of kind {self.kind.value} ({protocol.__name__})"
            )
        return built


@dataclass(frozen=True)
class Status:
    name: str
    kind: Kind
    summary: str
    distribution: str  # the package that installed it, with its version
    configured: bool
    reason: str  # what is missing when not configured


def load_all() -> dict[str, Adapter[Any]]:
    """Every installed adapter by name; raises AdapterLoadError on the first bad one."""
    adapters: dict[str, Adapter[Any]] = {}
    for point in sorted(entry_points(group=GROUP), key=lambda point: point.name):
        adapter = _load(point)
        if adapter.name in adapters:
            raise AdapterLoadError(f"two installed packages declare the adapter {point.name!r}")
        adapters[adapter.name] = adapter
    return adapters


def get(name: str) -> Adapter[Any]:
    adapters = load_all()
    if name not in adapters:
        known = ", ".join(adapters) or "none"
        raise AdapterNotFound(f"no adapter named {name!r} is installed (installed: {known})")
    return adapters[name]


def status() -> list[Status]:
    """Installed adapters and whether their settings are complete, with what is missing."""
    return [_status(adapter) for adapter in load_all().values()]


async def check(name: str, **values: Any) -> None:
    """Build adapter `name` from its configured settings and call its health check.

    Raises AdapterNotFound, ValidationError (settings incomplete or invalid) or the
    adapter's UpstreamError.
    """
    adapter = get(name)
    connection = adapter.connect(adapter.read_settings(**values))
    try:
        await connection.health()
    finally:
        await connection.aclose()


def _status(adapter: Adapter[Any]) -> Status:
    try:
        adapter.read_settings()
        configured, reason = True, ""
    except ValidationError as exc:
        configured, reason = False, describe_invalid(adapter, exc)
    return Status(
        adapter.name,
        adapter.kind,
        adapter.summary,
        _distribution(adapter),
        configured,
        reason,
    )


def describe_invalid(adapter: Adapter[Any], exc: ValidationError) -> str:
    """Settings errors as the variables to set or fix."""
    problems = []
    for error in exc.errors():
        variable = adapter.env_prefix + "_".join(str(part) for part in error["loc"]).upper()
        if error["type"] == "missing":
            problems.append(f"set {variable}")
        else:
            problems.append(f"{variable}: {error['msg']}")
    return "; ".join(problems)


def _distribution(adapter: Adapter[Any]) -> str:
    for point in entry_points(group=GROUP, name=adapter.name):
        if point.dist is not None:
            return f"{point.dist.name} {point.dist.version}"
    return "unknown"


def _load(point: EntryPoint) -> Adapter[Any]:
    where = f"entry point {point.name!r} ({point.value}) of group {GROUP}"
    try:
        declared = point.load()
    except Exception as exc:
        raise AdapterLoadError(f"{where} failed to import: {type(exc).__name__}: {exc}") from exc
    problem = _malformed(point.name, declared)
    if problem:
        raise AdapterLoadError(f"{where} is malformed: {problem}")
    return declared


def _malformed(name: str, declared: object) -> str | None:
    if not isinstance(declared, Adapter):
        return f"it names a {type(declared).__name__}, not an adapters.registry.Adapter"
    if declared.name != name:
        return f"the Adapter is named {declared.name!r}; the entry point must use that name"
    if not _NAME.match(name):
        return "names are lowercase letters, digits and _, starting with a letter"
    if declared.kind not in {kind.value for kind in Kind}:
        kinds = ", ".join(kind.value for kind in Kind)
        return f"kind {declared.kind!r} is not one of {kinds}"
    if not (isinstance(declared.settings, type) and issubclass(declared.settings, AdapterSettings)):
        return "settings must be a subclass of adapters.registry.AdapterSettings"
    prefix = declared.settings.model_config.get("env_prefix", "")
    if prefix != declared.env_prefix:
        return f"its settings read {prefix!r}* variables; they must read {declared.env_prefix}*"
    if not callable(declared.build):
        return "build must be callable with the settings"
    if declared.sandbox is not None and not isinstance(declared.sandbox, Sandbox):
        return "sandbox must be an adapters.sandbox.server.Sandbox"
    return None
