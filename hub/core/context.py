"""The per-request context: built in one place for HTTP and WebSocket alike."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
import strawberry
from starlette.requests import HTTPConnection
from strawberry.dataloader import DataLoader

from hub.core.caller import ANONYMOUS, Caller
from hub.core.settings import Settings

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")
LoaderFactory = Callable[[asyncpg.Pool], DataLoader[K, V]]
# Takes the caller from a bearer token again (auth's verifier, given by the runtime).
Recheck = Callable[[str], Caller | None]


@dataclass
class Context:
    connection: HTTPConnection
    db: asyncpg.Pool
    caller: Caller
    settings: Settings = field(default_factory=Settings)
    # Each domain's per-process state (what its lifespan yielded), by type.
    states: Mapping[type, object] = field(default_factory=dict)
    verify: Recheck | None = None
    # graphql-transport-ws: the connection_init payload (strawberry fills it in), and the
    # bearer token from it, checked again for every operation on the socket.
    connection_params: dict[str, Any] | None = None
    token: str | None = None
    _loaders: dict[Callable[..., Any], DataLoader[Any, Any]] = field(default_factory=dict)

    def recheck(self) -> None:
        """On a WebSocket, the token may have expired or been revoked since connection_init:
        take the caller from it again; without a valid token, anonymous."""
        if self.token is None or self.verify is None:
            return
        caller = self.verify(self.token)
        if caller is None:
            self.caller, self.token = ANONYMOUS, None
        else:
            self.caller = caller

    def state(self, kind: type[T]) -> T:
        """The state of the domain whose lifespan yielded a `kind` in this process."""
        found = self.states.get(kind)
        if not isinstance(found, kind):
            raise LookupError(f"no {kind.__name__} in this hub: is its domain installed?")
        return found

    def loader(self, factory: LoaderFactory[K, V]) -> DataLoader[K, V]:
        """This request's loader from `factory`: made on first use, never shared."""
        if factory not in self._loaders:
            self._loaders[factory] = factory(self.db)
        return self._loaders[factory]


Info = strawberry.Info[Context, None]


def build_context(connection: HTTPConnection) -> Context:
    """HTTP: the caller the endpoint found in the Authorization header. WebSocket: anonymous
    until connection_init brings a token (GraphQLEndpoint.on_ws_connect)."""
    caller = getattr(connection.state, "caller", ANONYMOUS)
    state = connection.app.state
    return Context(
        connection=connection,
        db=state.db,
        caller=caller,
        settings=state.settings,
        states=state.domain_states,
        verify=state.recheck,
    )
