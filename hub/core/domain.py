"""The domain manifest: everything a domain brings to the hub, in one declaration.

The runtime (`hub/`) loops over the installed domains' manifests and never names one, so
adding a domain means adding files in its own places (`schema/<d>`, `resolvers/<d>/`,
`migrations/NNNN_<d>_*.sql`, `tests/<d>/`, `docs/<d>.md`) plus one registration line.
Every part is optional: a domain declares only what it has.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncpg
from pydantic_settings import BaseSettings

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from hub.core.servers import Servers
    from hub.core.settings import Settings


@dataclass(frozen=True)
class ScopeInfo:
    """An OAuth scope a domain defines, explained to citizens on the consent page."""

    name: str  # `<domain>:<action>`, or a platform-wide name such as `profile`
    ko: str
    en: str
    # A citizen grants it to an app on the consent page (the demo app's sign-in asks for
    # these); the others are held by partners, officials and agencies.
    citizen: bool = False


@dataclass(frozen=True)
class Worker:
    """A long-running job of a domain (a stream consumer, a poller …).

    `ieum worker NAME` runs it alone; `ieum serve` also runs it in-process when
    `in_serve(settings)` says so (single-machine mode). `run` returns when `stop` is set.
    """

    name: str
    help: str
    run: Callable[[Settings, Servers, asyncio.Event], Coroutine[Any, Any, None]]
    in_serve: Callable[[Settings], bool] = lambda settings: False


@dataclass(frozen=True)
class Command:
    """An `ieum <domain> <name>` command (`ieum <name>` too where `top_level`, for the
    names that existed before domains had their own).

    The runtime finds the servers it needs (the running hub's, or embedded ones) and
    calls `run`, which returns the exit code.
    """

    name: str
    help: str
    run: Callable[[Settings, Servers, argparse.Namespace], int]
    arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None
    needs_database: bool = True
    needs_broker: bool = False
    top_level: bool = False


@dataclass(frozen=True)
class DemoEnv:
    """What demo data may use: the database, the servers and the demo partner's client id."""

    pool: asyncpg.Pool
    settings: Settings
    servers: Servers
    client_id: str
    stopping: asyncio.Event
    background: Callable[[Coroutine[Any, Any, object], str], None]  # runs until the hub stops


# Per-process state: entered once per app (HTTP process); what it yields is what
# `Context.state(type)` hands to that domain's resolvers.
Lifespan = Callable[["Settings", "Servers"], AbstractAsyncContextManager[object]]
# A readiness check: raises with a reason when the domain cannot do its work.
ReadinessCheck = Callable[[Mapping[type, object]], Awaitable[None]]


@dataclass(frozen=True)
class Domain:
    name: str
    description: str = ""
    requires: tuple[str, ...] = ()  # domains whose Python API this one calls
    # GraphQL
    query: type | None = None
    mutation: type | None = None
    subscription: type | None = None
    # Extra types, and this domain's part of a shared entity: a class with the entity's
    # GraphQL name and @key holding the key and the fields the domain adds (its own
    # subgraph resolves it through `_entities`; the builder merges the parts per build).
    types: tuple[type, ...] = ()
    # Runtime
    settings: type[BaseSettings] | None = None  # a section of the one Settings object
    scopes: tuple[ScopeInfo, ...] = ()
    lifespan: Lifespan | None = None
    workers: tuple[Worker, ...] = ()
    commands: tuple[Command, ...] = ()
    # PostgreSQL settings this domain's queries need on every connection (startup
    # parameters of the shared pools, e.g. {"plan_cache_mode": "force_custom_plan"}).
    database_settings: Mapping[str, str] = field(default_factory=dict)
    reference_data: Callable[[asyncpg.Connection], Awaitable[None]] | None = None
    demo: Callable[[DemoEnv], Awaitable[Sequence[str]]] | None = None  # → banner lines
    readiness: Mapping[str, ReadinessCheck] = field(default_factory=dict)
    routes: Sequence[BaseRoute] = ()
