"""What the benchmarks share: the servers they run on, load loops and the report line."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hub.embedded import broker, postgres
from hub.settings import Settings


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
