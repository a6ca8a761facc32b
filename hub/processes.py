"""More processes answering on the hub's port: one Python process uses one core.

`ieum serve` binds a listening socket on the port for itself and for each of
`IEUM_WORKERS - 1` extra processes, each running the whole app (its own pool, caches,
token keys and live feed); the kernel spreads new connections over the sockets. The
ingest worker and the demo fleet stay in the first process. A worker stops on SIGTERM or
SIGINT, finishing its requests, and on its own when the process that started it is gone,
so a killed hub leaves none behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
from collections.abc import Iterator, Sequence
from multiprocessing.process import BaseProcess

import uvicorn

from hub.app import create_app
from hub.core import gc_tuning
from hub.core.servers import Servers
from hub.core.settings import Settings

log = logging.getLogger(__name__)


def listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """The hub's port, bound here once per process that will serve it.

    With several processes each gets a socket of its own on the port (SO_REUSEPORT), and
    the kernel spreads new connections over them by a hash of their addresses. One
    shared socket spread nothing: whichever process woke first accepted a whole burst of
    connections (20 of 20 in the benchmark), and keep-alive connections stay where they
    were accepted.
    """
    if count > 1 and not hasattr(socket, "SO_REUSEPORT"):
        raise OSError("IEUM_WORKERS above 1 needs SO_REUSEPORT, which this system lacks")
    sockets = [_listening(host, port, reuse_port=count > 1)]
    port = sockets[0].getsockname()[1]
    try:
        for _ in range(count - 1):
            sockets.append(_listening(host, port, reuse_port=True))
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _listening(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say
    # they are TCP, and with Nagle on, every small response waits ~40 ms for an ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class Server(uvicorn.Server):
    """Stops when told (`should_exit`), without uvicorn's signal capture, which re-raises
    the signal once stopped: the caller decides how a signal ends the process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def server_config(
    settings: Settings, servers: Servers, domains: Sequence[str] | None
) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(settings, servers, domains),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        ws="websockets-sansio",
        ws_max_size=settings.graphql_max_body_bytes,  # a message is a request: same cap
    )


def start(
    settings: Settings,
    servers: Servers,
    domains: Sequence[str] | None,
    sockets: Sequence[socket.socket],
) -> list[BaseProcess]:
    """A process serving the app on each of `sockets` (spawned: this process runs threads).

    Each socket is closed here once its process holds it, so a process that dies takes
    its socket out of the port's group and new connections go to the others.
    """
    context = multiprocessing.get_context("spawn")
    processes: list[BaseProcess] = []
    for number, sock in enumerate(sockets):
        process = context.Process(
            target=_serve,
            args=(settings, servers, list(domains) if domains else None, sock, os.getpid()),
            name=f"ieum-http-{number + 1}",
        )
        process.start()
        sock.close()
        processes.append(process)
    return processes


def stop(processes: list[BaseProcess], timeout: float) -> None:
    """Ask each worker to finish its requests and stop; kill those that do not in time."""
    for process in processes:
        if process.is_alive() and process.pid:
            os.kill(process.pid, signal.SIGTERM)
    for process in processes:
        process.join(timeout)
        if process.is_alive():
            log.warning("workers.killed pid=%s", process.pid)
            process.kill()
            process.join()


def _serve(
    settings: Settings,
    servers: Servers,
    domains: list[str] | None,
    sock: socket.socket,
    parent: int,
) -> None:
    logging.basicConfig(level=settings.log_level.upper(), format="%(message)s")
    server = Server(server_config(settings, servers, domains))

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, setattr, server, "should_exit", True)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not serving.done():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        gc_tuning.settle_after_startup()
        while not serving.done() and os.getppid() == parent:
            await asyncio.wait({serving}, timeout=1)
        server.should_exit = True  # the hub that started this worker is gone
        await serving

    asyncio.run(run())
