"""The per-request context: built in one place for HTTP and WebSocket alike."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
import strawberry
from starlette.requests import HTTPConnection
from strawberry.dataloader import DataLoader

from auth.caller import ANONYMOUS, Caller
from auth.tokens import InvalidToken, TokenChecksUnavailable
from hub.core.errors import UpstreamUnavailable
from hub.core.result_cache import ResultCache
from hub.core.settings import Settings
from resolvers.sensors.segments import RollupStore

K = TypeVar("K")
V = TypeVar("V")
LoaderFactory = Callable[[asyncpg.Pool], DataLoader[K, V]]


@dataclass
class Context:
    connection: HTTPConnection
    db: asyncpg.Pool
    caller: Caller
    settings: Settings = field(default_factory=Settings)
    aggregates: ResultCache = field(default_factory=lambda: ResultCache(0))
    rollups: RollupStore = field(default_factory=lambda: RollupStore(0))
    # graphql-transport-ws: the connection_init payload (strawberry fills it in), and the
    # bearer token from it, checked again for every operation on the socket.
    connection_params: dict[str, Any] | None = None
    token: str | None = None
    _loaders: dict[Callable[..., Any], DataLoader[Any, Any]] = field(default_factory=dict)

    def recheck(self) -> None:
        """On a WebSocket, the token may have expired or been revoked since connection_init:
        take the caller from it again; without a valid token, anonymous."""
        if self.token is None:
            return
        try:
            self.caller = self.connection.app.state.tokens.verify(self.token)
        except InvalidToken:
            self.caller = ANONYMOUS
            self.token = None
        except TokenChecksUnavailable as exc:
            raise UpstreamUnavailable(str(exc)) from None

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
        aggregates=state.aggregates,
        rollups=state.rollups,
    )
