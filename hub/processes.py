"""More processes answering on the hub's port: one Python process uses one core.

`ieum serve` binds a listening socket on the port for itself and for each of
`IEUM_WORKERS - 1` extra processes (by default one per core), each running the whole app
(its own pool, caches, rollups in memory, token keys, live feed and subscriptions); the
kernel spreads new connections over the sockets. The domains' workers, the demo fleet
and the sandboxes of unconfigured adapters stay in the first process: one of each per
hub. The banner waits until every
process answers. A process that exits on its own once serving is started again on a new
socket; one that exits while starting stops the hub. A worker stops on SIGTERM or SIGINT,
finishing its requests, and on its own when the process that started it is gone, so a
killed hub leaves none behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from typing import Any

import uvicorn
from pydantic import ValidationError

from adapters import connections, registry
from adapters.sandbox.server import running
from hub.app import create_app
from hub.core import eventloop, gc_tuning
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
    if count > 1 and port:
        # SO_REUSEPORT would let this hub join another's group on a port in use (another
        # checkout's hub on 8000): a socket without it is refused there, as one process is.
        _listening(host, port, reuse_port=False).close()
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


class ConnectionShare:
    """One process's place among the HTTP connections of a hub's processes.

    The kernel spreads connections over the processes' sockets by a hash of their
    addresses, not by load, and keep-alive connections stay where they landed: a proxy or
    a load generator holding 20 connections to two processes often gets 12 and 8 (14 and
    6 about one time in ten), and the busier process then sets everyone's slowest
    latencies while the other has cores to spare. So each process writes how many
    HTTP connections it holds into memory the processes share, and one that holds more
    than its even share asks that many of its clients to connect again: their current
    response goes out with `Connection: close`, as at a graceful shutdown, and the new
    connection lands by the hash again, on the fewer-loaded process half the time. Only
    a connection in the middle of a request is asked (an idle one closed under a client
    that is just sending would fail its request), and WebSockets are never asked.
    """

    def __init__(self, counts: Any, index: int) -> None:
        self.counts = counts  # a multiprocessing RawArray("i"), one entry per process
        self.index = index

    @staticmethod
    def counts_for(processes: int) -> Any:
        return multiprocessing.get_context("spawn").RawArray("i", processes)

    def rebalance(self, connections: Iterable[Any]) -> int:
        """Record this process's HTTP connections and ask as many to reconnect as it
        holds above its share, counting those already asked (by this or a graceful
        shutdown); how many were asked now. uvicorn's HTTP protocols have a request
        cycle (None between requests), its WebSocket ones none."""
        cycles = [c.cycle for c in connections if hasattr(c, "cycle")]
        self.counts[self.index] = len(cycles)
        counts = list(self.counts)
        share = -(-sum(counts) // len(counts))  # rounded up: 21 over 2 leaves 11 and 10
        leaving = sum(1 for cycle in cycles if cycle is not None and not cycle.keep_alive)
        asked = 0
        for cycle in cycles:
            if asked >= len(cycles) - share - leaving:
                break
            if cycle is not None and not cycle.response_complete and cycle.keep_alive:
                cycle.keep_alive = False
                asked += 1
        return asked


class Server(uvicorn.Server):
    """Stops when told (`should_exit`), without uvicorn's signal capture, which re-raises
    the signal once stopped: the caller decides how a signal ends the process. With a
    `share`, it evens out its HTTP connections with the hub's other processes every tick
    (uvicorn's, a tenth of a second)."""

    def __init__(self, config: uvicorn.Config, share: ConnectionShare | None = None) -> None:
        super().__init__(config)
        self.share = share

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def on_tick(self, counter: int) -> bool:
        if self.share is not None:
            self.share.rebalance(self.server_state.connections)
        return await super().on_tick(counter)


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


class StartFailed(RuntimeError):
    """An HTTP process exited, or did not answer, while starting."""


@dataclass
class Worker:
    number: int
    process: BaseProcess
    ready: Event


class Group:
    """The extra HTTP processes of one hub: started, waited for, replaced, stopped."""

    def __init__(
        self,
        settings: Settings,
        servers: Servers,
        domains: Sequence[str] | None,
        sandboxes: Mapping[str, str],
        counts: Any = None,
    ) -> None:
        """`counts` (ConnectionShare.counts_for) has an entry for each process serving
        the port, the hub's first: process `number` keeps its connections at
        `number - 1`. None: no process evens out its connections."""
        self.settings = settings
        self.counts = counts
        self.servers = servers
        self.domains = list(domains) if domains else None
        self.sandboxes = dict(sandboxes)
        self.context = multiprocessing.get_context("spawn")
        self.workers: list[Worker] = []

    def start(self, sockets: Sequence[socket.socket]) -> None:
        for sock in sockets:
            self.workers.append(self._spawn(len(self.workers) + 2, sock))  # the hub is 1

    def wait_ready(self, timeout: float, stopping: Callable[[], bool] = lambda: False) -> None:
        """Return once every process serves, or the hub is stopping; StartFailed if one
        exited or took too long."""
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            while not worker.ready.wait(0.2):
                if stopping():
                    return
                if not worker.process.is_alive():
                    raise StartFailed(
                        f"HTTP process {worker.number} (pid {worker.process.pid}) exited "
                        f"while starting, code {worker.process.exitcode}"
                    )
                if time.monotonic() > deadline:
                    raise StartFailed(
                        f"HTTP process {worker.number} did not serve within {timeout:.0f} s"
                    )

    def replace_exited(self, port: int) -> list[str]:
        """Start again each process that exited on its own once serving (a crash, the OOM
        killer); the new one binds its socket on `port` once its app is built, so no
        connection waits for it meanwhile. What changed, for the log."""
        changes = []
        for worker in list(self.workers):
            if worker.process.is_alive():
                continue
            exited = f"pid={worker.process.pid} code={worker.process.exitcode}"
            if not worker.ready.is_set():  # a replacement that could not start: no loop
                self.workers.remove(worker)
                changes.append(f"{exited} failed to start; the other processes serve")
                continue
            replacement = self._spawn(worker.number, port)  # raises: tried again later
            self.workers[self.workers.index(worker)] = replacement
            changes.append(f"{exited} replaced by pid={replacement.process.pid}")
        return changes

    def stop(self, timeout: float) -> None:
        stop([worker.process for worker in self.workers], timeout)

    def _spawn(self, number: int, sock: socket.socket | int) -> Worker:
        """A process serving on `sock`, or on a socket it binds itself on port `sock`."""
        ready = self.context.Event()
        process = self.context.Process(
            target=_serve,
            args=(
                self.settings,
                self.servers,
                self.domains,
                sock,
                os.getpid(),
                ready,
                self.sandboxes,
                None if self.counts is None else ConnectionShare(self.counts, number - 1),
            ),
            name=f"ieum-http-{number}",
        )
        process.start()
        if isinstance(sock, socket.socket):
            sock.close()
        return Worker(number, process, ready)


@contextlib.asynccontextmanager
async def shared_sandboxes() -> AsyncIterator[dict[str, str]]:
    """The sandboxes of adapters left unconfigured, served here for every process of the
    hub (adapter name -> URL); each process calls them only where its domain would have
    started one of its own (IEUM_PAYMENTS_SANDBOX …). One of each per hub, since a
    sandbox holds state: a seat held through one process is paid through another."""
    urls: dict[str, str] = {}
    async with contextlib.AsyncExitStack() as stack:
        for name, adapter in sorted(registry.load_all().items()):
            if adapter.sandbox is None:
                continue
            try:
                adapter.read_settings()
                continue  # configured: its upstream is real
            except ValidationError:
                pass
            served = await stack.enter_async_context(running(adapter.sandbox))
            urls[name] = served.url
        connections.share_sandboxes(urls)
        try:
            yield urls
        finally:
            connections.share_sandboxes({})


def _serve(
    settings: Settings,
    servers: Servers,
    domains: list[str] | None,
    sock: socket.socket | int,
    parent: int,
    ready: Event,
    sandboxes: dict[str, str],
    share: ConnectionShare | None,
) -> None:
    logging.basicConfig(level=settings.log_level.upper(), format="%(message)s")
    connections.share_sandboxes(sandboxes)
    server = Server(server_config(settings, servers, domains), share)
    if not isinstance(sock, socket.socket):
        sock = _listening(settings.host, sock, reuse_port=True)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, setattr, server, "should_exit", True)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not serving.done():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if server.started:
            gc_tuning.settle_after_startup()
            ready.set()
        while not serving.done() and os.getppid() == parent:
            await asyncio.wait({serving}, timeout=1)
        server.should_exit = True  # the hub that started this worker is gone
        await serving
        if not server.started:
            raise SystemExit(1)

    eventloop.run(run())
