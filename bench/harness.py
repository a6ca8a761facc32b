"""What the benchmarks share: the servers they run on, load loops and the report line."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from hub.core.settings import Settings
from hub.embedded import broker, postgres


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
        if self.idle:
            reader, writer = self.idle.pop()
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
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        if length is None:
            raise RuntimeError(f"no Content-Length in the response: {head!r}")
        answer = await reader.readexactly(length)
        self.idle.append((reader, writer))
        return status, answer

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


def report(name: str, latencies: list[float], seconds: float) -> float:
    """Print requests/s, p50 and p99; return requests/s."""
    quantiles = statistics.quantiles(latencies, n=100)
    rate = len(latencies) / seconds
    print(
        f"{name:42} {rate:7.0f} req/s   p50 {quantiles[49] * 1000:7.2f} ms"
        f"   p99 {quantiles[98] * 1000:7.2f} ms"
    )
    return rate
