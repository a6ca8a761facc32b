"""The adapters one process calls, by name, connected on first use.

An adapter is configured by its own variables. Where those are missing and `sandbox` is
on (the demo, a developer's machine), the adapter's sandbox runs inside this process,
shared by everything in it, and the adapter is pointed at it (with several HTTP processes,
at the one `ieum serve` runs for all of them: `share_sandboxes`); with `sandbox` off a
missing setting is an UPSTREAM_UNAVAILABLE error naming what is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Mapping
from typing import Any, Protocol, TypeVar

from pydantic import ValidationError
from starlette.types import Receive, Scope, Send

from adapters import registry
from adapters.errors import UpstreamUnavailable
from adapters.sandbox.faults import FaultInjector
from adapters.sandbox.server import RunningSandbox, running

OnSandbox = Callable[[RunningSandbox], Awaitable[None]]


class Connections:
    """Built adapters for one process; close with aclose()."""

    def __init__(self, owner: str, *, sandbox: bool, on_sandbox: OnSandbox | None = None) -> None:
        self.owner = owner  # who asks, for error messages: a domain's name
        self.sandbox = sandbox
        self.on_sandbox = on_sandbox  # e.g. point a sandbox's webhooks at this hub
        self._built: dict[str, Any] = {}
        self._building: dict[str, asyncio.Future[Any]] = {}
        self._sandboxes = contextlib.AsyncExitStack()

    async def get(self, name: str) -> Any:
        """The connected adapter `name` (check its kind with `adapters.kinds`).

        Built once, in a task of its own that callers share: a caller cancelled meanwhile
        (a request's time budget, a sibling field's error) leaves the build, and a sandbox
        half started, to finish for the next one rather than abandoning it."""
        if name in self._built:
            return self._built[name]
        building = self._building.get(name)
        if building is None:
            building = asyncio.ensure_future(self._build(name))
            self._building[name] = building
            building.add_done_callback(lambda _: self._building.pop(name, None))
        return await asyncio.shield(building)

    async def _build(self, name: str) -> Any:
        adapter = registry.get(name)
        try:
            settings = adapter.read_settings()
        except ValidationError as exc:
            settings = await self._sandboxed(adapter, exc)
        self._built[name] = adapter.connect(settings)
        return self._built[name]

    async def aclose(self) -> None:
        for building in list(self._building.values()):
            building.cancel()
            await asyncio.gather(building, return_exceptions=True)
        for connection in self._built.values():
            await connection.aclose()
        self._built.clear()
        await self._sandboxes.aclose()

    async def _sandboxed(self, adapter: registry.Adapter[Any], exc: ValidationError) -> Any:
        if not self.sandbox or adapter.sandbox is None:
            raise UpstreamUnavailable(
                f"{self.owner}: the {adapter.name} adapter is not configured: "
                f"{registry.describe_invalid(adapter, exc)}",
                upstream=adapter.name,
            )
        served = _SERVED.get(adapter.name)
        if served is not None:  # by another part of this hub: its state is shared
            sandbox = RunningSandbox(adapter.sandbox, served, FaultInjector(_served_elsewhere))
        else:
            sandbox = await self._sandboxes.enter_async_context(running(adapter.sandbox))
        if self.on_sandbox is not None:
            await self.on_sandbox(sandbox)
        return adapter.read_settings(**sandbox.settings())


# Sandboxes already served for this hub, by adapter name: their URLs. A sandbox holds
# state (a held seat, a payment), so the processes of one hub (IEUM_WORKERS) must all call
# the same one: `ieum serve` starts them once and names them here in every process.
_SERVED: dict[str, str] = {}


def share_sandboxes(urls: Mapping[str, str]) -> None:
    """Call these sandboxes (adapter name -> URL) instead of starting one in this process."""
    _SERVED.clear()
    _SERVED.update(urls)


async def _served_elsewhere(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("this sandbox is served by another process: inject faults over HTTP")


class Closable(Protocol):
    async def aclose(self) -> None: ...


C = TypeVar("C", bound=Closable)
_SHARED: dict[tuple[int, Hashable], tuple[Any, list[int]]] = {}


@contextlib.asynccontextmanager
async def shared(key: Hashable, make: Callable[[], C]) -> AsyncIterator[C]:
    """One `make()` per event loop and `key`, closed when its last user is done: the HTTP
    app and the workers running beside it call the same adapters, and so the same
    in-process sandboxes."""
    slot = (id(asyncio.get_running_loop()), key)
    if slot not in _SHARED:
        _SHARED[slot] = (make(), [0])
    found: C = _SHARED[slot][0]
    users = _SHARED[slot][1]
    users[0] += 1
    try:
        yield found
    finally:
        users[0] -= 1
        if users[0] == 0:
            del _SHARED[slot]
            await found.aclose()
