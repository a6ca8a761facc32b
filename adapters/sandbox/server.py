"""Run a sandbox: in this process on a free loopback port (tests), or as `ieum sandbox NAME`."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp

from adapters.sandbox.faults import ADMIN_PATH, FaultInjector, FaultPlan


@dataclass(frozen=True)
class Sandbox:
    """A server speaking an outside system's documented format, for runs without it.

    `configure(url)` gives the settings (field name -> value) of the adapter that make it
    call a sandbox listening at `url`. `expected()` gives what a correct adapter's main
    call returns against a fresh sandbox (its data is generated, not parsed back), so the
    contract kit can compare an adapter's answer with the truth.
    """

    name: str
    summary: str
    app: Callable[[], ASGIApp]
    configure: Callable[[str], dict[str, str]]
    expected: Callable[[], Any] | None = None


@dataclass(frozen=True)
class RunningSandbox:
    sandbox: Sandbox
    url: str
    injector: FaultInjector

    def settings(self) -> dict[str, str]:
        return self.sandbox.configure(self.url)

    async def inject(self, **plan: Any) -> None:
        """Set a fault plan over HTTP, as a test or an operator would (see faults.py)."""
        body = FaultPlan(**plan).model_dump_json()
        async with httpx.AsyncClient(base_url=self.url) as client:
            (await client.post(ADMIN_PATH, content=body)).raise_for_status()

    async def clear(self) -> None:
        async with httpx.AsyncClient(base_url=self.url) as client:
            (await client.delete(ADMIN_PATH)).raise_for_status()


def _server(sandbox: Sandbox) -> tuple[uvicorn.Server, FaultInjector]:
    injector = FaultInjector(sandbox.app())
    config = uvicorn.Config(
        injector,
        log_level="warning",
        access_log=False,
        lifespan="auto",  # a sandbox may close what it holds (the gateway's webhook client)
        ws="none",
        timeout_graceful_shutdown=1,
    )
    return uvicorn.Server(config), injector


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it; without it Nagle meets delayed ACKs: 40 ms a call.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    return sock


@asynccontextmanager
async def running(sandbox: Sandbox, port: int = 0) -> AsyncIterator[RunningSandbox]:
    """Serve `sandbox` on 127.0.0.1 (a free port by default) for the duration of the block."""
    server, injector = _server(sandbox)
    with _bind("127.0.0.1", port) as sock:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:  # from here: cancelled while starting, the server still stops before the
            # socket closes (closed while the loop watched it, its number was refused to
            # the next socket that got it, a PostgreSQL connection: ENOENT from epoll)
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError(f"sandbox {sandbox.name} stopped while starting")
                await asyncio.sleep(0.01)
            yield RunningSandbox(sandbox, f"http://127.0.0.1:{sock.getsockname()[1]}", injector)
        finally:
            server.should_exit = True
            await task


def serve(sandbox: Sandbox, host: str, port: int, on_ready: Callable[[str], None]) -> None:
    """Serve until interrupted; `on_ready` gets the URL once the port is bound."""
    server, _ = _server(sandbox)
    with _bind(host, port) as sock:
        on_ready(f"http://{host}:{sock.getsockname()[1]}")
        asyncio.run(server.serve(sockets=[sock]))
