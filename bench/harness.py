"""What the benchmarks share: the servers they run on, a fresh database, the sandboxes
and the hub in processes of their own, a lean load client, load loops, the CPU each
process spent, and the report lines."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import http.client
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from adapters import registry
from adapters.sandbox.faults import FaultPlan
from adapters.sandbox.server import running
from auth import kek
from hub.core import eventloop, gc_tuning
from hub.core.settings import Settings
from hub.embedded import broker, postgres
from hub.embedded.ports import free_port

CALL_LOG_PATH = "/_bench/calls"

# The benchmarks measure the hub, not its rate limits: one client sending thousands of
# requests a second from one address would be answered 429 (docs/operating.md#rate-limits).
# The hubs they start, in this process or as children, inherit these.
for _limit in ("GRAPHQL_CLIENT", "GRAPHQL_IP", "SIGNIN_IP", "OAUTH_IP", "WEBSOCKET_IP"):
    os.environ.setdefault(f"IEUM_RATE_{_limit}_PER_SECOND", "0")


@contextmanager
def servers(settings: Settings) -> Iterator[tuple[str, str]]:
    """PostgreSQL URL and Kafka bootstrap: the configured ones, or embedded ones for the run."""
    with tempfile.TemporaryDirectory() as tmp:
        pg = None if settings.database_url else postgres.start(Path(tmp) / "pg")
        kafka = None if settings.kafka_bootstrap else broker.start(Path(tmp) / "broker.log")
        try:
            url = settings.database_url or (pg.url if pg else "")
            bootstrap = settings.kafka_bootstrap or (kafka.bootstrap if kafka else "")
            yield url, bootstrap
        finally:
            if kafka:
                kafka.stop()
            if pg:
                pg.stop()


@contextlib.asynccontextmanager
async def fresh_database(server_url: str, bench: str) -> AsyncIterator[str]:
    """A database of the bench's own, dropped whole at the end: ledger rows cannot be
    deleted, and no run sees another's rows."""
    name = f"ieum_bench_{bench}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
        finally:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


# The world: sandboxes and the hub, each in processes of their own


@contextmanager
def sandboxes(
    names: tuple[str, ...], latency_seconds: float = 0.0
) -> Iterator[tuple[dict[str, str], int]]:
    """The adapters' sandboxes served by one child process (they stand for systems
    elsewhere), each answering after `latency_seconds` (its fault injector; the /_ control
    paths are exempt): their URLs by adapter name, the process's pid."""
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=_serve_sandboxes, args=(child, names, latency_seconds), daemon=True
    )
    process.start()
    try:
        yield parent.recv(), process.pid or 0
    finally:
        parent.send("stop")
        process.join(10)


def _serve_sandboxes(pipe: Connection, names: tuple[str, ...], latency_seconds: float) -> None:
    async def serve() -> None:
        async with contextlib.AsyncExitStack() as stack:
            urls = {}
            for name in names:
                sandbox = registry.get(name).sandbox
                assert sandbox is not None
                logged = dataclasses.replace(sandbox, app=partial(CallLog, sandbox.app))
                served = await stack.enter_async_context(running(logged))
                if latency_seconds:
                    served.injector.plan = FaultPlan(latency_seconds=latency_seconds)
                urls[name] = served.url
            # As a hub process settles: an upstream's collection pauses would otherwise
            # show as slow upstream calls in the hub's overhead (full ones of 66-341 ms).
            gc_tuning.settle_after_startup()
            pipe.send(urls)
            await asyncio.to_thread(pipe.recv)

    # On the hub's loop (uvloop): they stand for systems elsewhere, so the less of the
    # cores they share with the hub they take, the closer the figures are to production.
    eventloop.run(serve())


class CallLog:
    """A sandbox app that notes when each call to it began and ended, on the machine's
    monotonic clock (CLOCK_MONOTONIC, which time.monotonic reads in every process): a
    bench lays the calls along its own requests' times. It sits inside the fault
    injector, so a call's beginning is after the injected latency. `GET /_bench/calls`
    answers `[[began, ended], …]` and forgets them."""

    def __init__(self, app: Callable[[], ASGIApp]) -> None:
        self.app = app()
        self.calls: list[tuple[float, float]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_"):
            if scope["type"] == "http" and scope["path"] == CALL_LOG_PATH:
                calls, self.calls = self.calls, []
                await JSONResponse(calls)(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        began = time.monotonic()
        await self.app(scope, receive, send)
        self.calls.append((began, time.monotonic()))


@contextmanager
def hub(
    url: str,
    bootstrap: str,
    sandbox_urls: dict[str, str],
    env: dict[str, str],
    log: IO[bytes] | None = None,
) -> Iterator[tuple[str, int]]:
    """`ieum serve --no-demo` on a free port, its adapters pointed at the sandboxes, with
    `env` on top (IEUM_WORKERS …), its log to `log` (else to this process's stderr): its
    URL and pid."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    environment = {
        **os.environ,
        "IEUM_DATABASE_URL": url,
        "IEUM_KAFKA_BOOTSTRAP": bootstrap,
        "IEUM_PORT": str(port),
        "IEUM_PUBLIC_URL": base,
        "IEUM_LOG_LEVEL": "warning",
        "IEUM_INGEST": "false",
        # The hub's data dir is its own: it must open the signing keys this process made.
        "IEUM_AUTH_KEK": base64.b64encode(kek.current().key).decode(),
    }
    for name, sandbox_url in sandbox_urls.items():
        adapter = registry.get(name)
        assert adapter.sandbox is not None
        for field, value in adapter.sandbox.configure(sandbox_url).items():
            environment[adapter.env_prefix + field.upper()] = str(value)
    environment.update(env)
    with tempfile.TemporaryDirectory() as data_dir:
        environment["IEUM_DATA_DIR"] = data_dir
        ieum = Path(sys.executable).parent / "ieum"
        process = subprocess.Popen(
            [str(ieum), "serve", "--no-demo"],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            _wait_healthy(port, process)
            time.sleep(3)  # every process is up, not just the first to answer
            yield base, process.pid
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_healthy(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while process.poll() is None:
        with contextlib.suppress(OSError):
            answer = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            answer.request("GET", "/healthz")
            if answer.getresponse().status == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError("the hub did not start")
        time.sleep(0.2)
    raise RuntimeError(f"the hub stopped while starting (exit {process.returncode})")


class Connections:
    """Keep-alive HTTP/1.1 connections that POST JSON, one per concurrent client.

    The load runs on the same two cores as the hub, so whatever the client spends per
    request is taken from the hub and shows in its latency. aiohttp spent 0.25-0.65 ms of
    CPU per request here, a sixth of a cached query's whole cost; this writes a prepared
    request and reads a Content-Length response with asyncio streams, about a tenth of that.
    """

    def __init__(self, base: str, headers: dict[str, str]) -> None:
        address = urlsplit(base)
        self.host, self.port = address.hostname or "127.0.0.1", address.port or 80
        fixed = {"Host": f"{self.host}:{self.port}", "Content-Type": "application/json"}
        self.head = "".join(f"{k}: {v}\r\n" for k, v in {**fixed, **headers}.items()).encode()
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened: list[asyncio.StreamWriter] = []

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """Status and body of one POST; a connection is opened when none is idle."""
        idle = self._reusable()
        if idle is not None:
            reader, writer = idle
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self.opened.append(writer)
        writer.write(
            b"POST %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s"
            % (path.encode(), self.head, len(body), body)
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = None
        close = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
            elif name.lower() == b"connection":
                close = value.strip().lower() == b"close"
        if length is None:
            raise RuntimeError(f"no Content-Length in the response: {head!r}")
        answer = await reader.readexactly(length)
        if close:  # the hub evens out its processes' connections (hub/processes.py)
            writer.close()
        else:
            self.idle.append((reader, writer))
        return status, answer

    def _reusable(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """An idle connection the server has not closed meanwhile: a client that waited
        longer than the server's keep-alive timeout (uvicorn's 5 s, e.g. while other
        clients finish a warm-up on a busy machine) would send into a closed socket."""
        while self.idle:
            reader, writer = self.idle.pop()
            if not reader.at_eof():
                return reader, writer
            writer.close()
        return None

    async def close(self) -> None:
        for writer in self.opened:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        self.opened.clear()
        self.idle.clear()


async def measure(call: Callable[[], Awaitable[None]], clients: int, seconds: float) -> list[float]:
    """Latencies of `call` run back to back by `clients` concurrent loops for `seconds`."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies


# CPU per process


class CpuClock:
    """CPU seconds spent by the processes at work during the run, read from /proc (Linux;
    PostgreSQL only when it runs on this machine): each root with its child processes,
    this process (the load client) alone. Where a request's cost goes."""

    def __init__(self, url: str, roots: dict[str, int]) -> None:
        self.url = url
        self.roots = roots
        self.before: dict[str, dict[int, float]] = {}

    @classmethod
    async def start(cls, url: str, roots: dict[str, int]) -> CpuClock:
        clock = cls(url, roots)
        clock.before = await clock._read()
        return clock

    async def stop(self) -> dict[str, float]:
        """Seconds per group; empty where /proc is not there."""
        after = await self._read()
        return {
            group: sum(cpu - self.before.get(group, {}).get(pid, 0.0) for pid, cpu in now.items())
            for group, now in after.items()
            if now
        }

    async def _read(self) -> dict[str, dict[int, float]]:
        groups = {name: _tree(pid) for name, pid in self.roots.items()}
        groups["load client"] = [os.getpid()]  # this process alone, not its children
        conn = await asyncpg.connect(self.url)
        try:
            # Our database's backends and the server's own (WAL writer, checkpointer …).
            rows = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
                " AND (datname = current_database() OR backend_type <> 'client backend')"
            )
        finally:
            await conn.close()
        groups["PostgreSQL"] = [
            row["pid"] for row in rows if _command(row["pid"]).startswith("postgres")
        ]
        return {
            name: {pid: cpu for pid in pids if (cpu := _cpu(pid)) is not None}
            for name, pids in groups.items()
        }


def _cpu(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _tree(root: int) -> list[int]:
    """`root` and its descendants (a hub's worker processes)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            parents.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


# Report lines


def quantiles(name: str, values: list[float]) -> None:
    """Print p50, p90 and p99 of `values` (seconds) in milliseconds."""
    q = statistics.quantiles(values, n=100)
    print(
        f"  {name:40} p50 {q[49] * 1000:7.2f} ms   p90 {q[89] * 1000:7.2f} ms"
        f"   p99 {q[98] * 1000:7.2f} ms"
    )


def report(name: str, latencies: list[float], seconds: float) -> float:
    """Print requests/s, p50 and p99; return requests/s."""
    quantiles = statistics.quantiles(latencies, n=100)
    rate = len(latencies) / seconds
    print(
        f"{name:42} {rate:7.0f} req/s   p50 {quantiles[49] * 1000:7.2f} ms"
        f"   p99 {quantiles[98] * 1000:7.2f} ms"
    )
    return rate
