"""p50/p99 latency of the sensor queries at 20 concurrent clients over 10 million readings.

    .venv/bin/python bench/sensor_queries.py [--readings 10000000] [--clients 20]
        [--seconds 10] [--workers N] [--only distinct] [--no-compare] [--rounds 3]

Loads synthetic readings straight into PostgreSQL (1,000 vehicles moving over central
Seoul's cells, one reading a second), builds their per-minute rollups in SQL, then starts
`ieum serve --no-demo` on that database with the settings a city gets by default (one
HTTP process per core, its in-process workers; IEUM_WORKERS unset, `--workers N` sets it),
and once its banner is out measures each query from this process over keep-alive
HTTP/1.1 connections (a lean client: the load shares the hub's cores), with the CPU a
request took in the hub's processes and in PostgreSQL. Baseline in the same run: the
hub's `{ __typename }` (HTTP + GraphQL + token check only).

Each query runs three ways. "same": one question from every client (a dashboard many
people look at). "last hour": every client asks for the hour up to its own clock, so no
two requests carry the same times, but most cover the same minutes (the aggregate cache
keys windows by whole minutes); once more while ingest-like writes raise the version of the
newest slot four times a second, so each process reads that slot's rollups again.
"distinct": every request covers a set of minutes no
request in the last several seconds covered (a shifted start and a length of 30 to 90
minutes), so every one is aggregated anew: the aggregate cache's misses, the worst case;
their first 3 s, while each hub process reads the rollups from PostgreSQL, are reported
apart.

The misses run twice more, for comparison in the same run (unless --no-compare): with
every aggregate computed in PostgreSQL (IEUM_ROLLUP_MEMORY_MB=0, as before the hub kept
rollups in memory), and with a single hub process (IEUM_WORKERS=1). `--only WORDS` runs
only the workloads whose names hold WORDS (and the baseline); `--rounds R` runs the
configurations in turn R times on the same readings (a noisy machine's spread, and the
comparison interleaved) and prints each p99's median and range. The last line gives the
default configuration's medians: `sensor_queries: workers=N rounds=R baseline_p99_ms=…
series_miss_p99_ms=… heatmap_miss_p99_ms=… route_miss_p99_ms=…`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import http.client
import os
import queue
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import asyncpg
import orjson
from h3.api import basic_int as h3
from harness import Connections, CpuClock, measure, report, servers

from auth import clients, kek
from hub.bootstrap import prepare_database
from hub.core import cores, db
from hub.core.settings import Settings
from hub.domains import installed
from hub.embedded.ports import free_port
from resolvers.sensors import ingest_store, rollup_levels
from resolvers.sensors.message import H3_RESOLUTION, pack
from resolvers.sensors.rollup import RollupRow

CENTRE = (37.5665, 126.9780)
VEHICLES = 1000
ROUTE = [(37.5705 - i * 0.002, 126.9769 + (i % 3) * 0.001) for i in range(10)]

installed()  # the domains' settings sections, as `ieum` loads them


async def load(url: str, readings: int, settings: Settings) -> datetime:
    """Readings and rollups; returns the time of the first reading."""
    conn = await db.connect(url, settings)
    area = sorted(h3.grid_disk(h3.latlng_to_cell(*CENTRE, H3_RESOLUTION), 40))
    centres = [h3.cell_to_latlng(c) for c in area]
    start = (datetime.now(UTC) - timedelta(hours=4)).replace(second=0, microsecond=0)
    seconds = readings // VEHICLES
    today = start.date()
    await ingest_store.ensure_partitions(conn, today - timedelta(days=1), today + timedelta(days=1))
    packed = pack(tuple([20.0] * 54))
    began = time.perf_counter()
    step = 600
    for first in range(0, seconds, step):
        await conn.execute(
            "INSERT INTO sensor_readings (ts, device_id, vehicle_id, lat, lng, cell, speed_kmh,"
            " heading_deg, metrics)"
            " SELECT $1::timestamptz + s * interval '1 second', 'v' || v, 'car' || v,"
            "        ($2::float8[])[1 + (v * 7 + s / 30) % $5],"
            "        ($3::float8[])[1 + (v * 7 + s / 30) % $5],"
            "        ($4::bigint[])[1 + (v * 7 + s / 30) % $5], 30, 90, $6"
            " FROM generate_series($7::int, $8::int) s, generate_series(0, $9::int) v",
            start,
            [c[0] for c in centres],
            [c[1] for c in centres],
            area,
            len(area),
            packed,
            first,
            min(first + step, seconds) - 1,
            VEHICLES - 1,
        )
    loaded = time.perf_counter() - began
    await conn.execute(
        "INSERT INTO sensor_rollups (cell, bucket, n, sum, sum_sq, min, max, vehicles)"
        " SELECT cell, date_trunc('minute', ts), array_fill(count(*)::int, ARRAY[54]),"
        "  array_fill(sum(10 + (hashtext(device_id) % 30 + 30) % 30)::float8, ARRAY[54]),"
        "  array_fill(sum(900)::float8, ARRAY[54]), array_fill(10::real, ARRAY[54]),"
        "  array_fill(40::real, ARRAY[54]),"
        "  (array_agg(DISTINCT hashtext(vehicle_id)::bigint))[1:16]"
        " FROM sensor_readings GROUP BY 1, 2"
    )
    # Loaded past the ingest worker: its 5-minute slots are built from the minutes.
    await conn.execute(rollup_levels.REBUILD)
    await conn.execute(
        "ANALYZE sensor_readings; ANALYZE sensor_rollups; ANALYZE sensor_rollups_5min"
    )
    count = await conn.fetchval("SELECT count(*) FROM sensor_readings")
    rollups = await conn.fetchval("SELECT count(*) FROM sensor_rollups")
    await conn.close()
    print(f"loaded {count:,} readings in {loaded:.0f} s; {rollups:,} rollup rows")
    return start


@contextmanager
def hub(url: str, bootstrap: str, env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """`ieum serve --no-demo` as a city runs it, on the bench's database and broker, with
    `env` on top; its URL and pid once its banner says every process serves."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    environment = {k: v for k, v in os.environ.items() if k != "IEUM_WORKERS"} | {
        "IEUM_DATABASE_URL": url,
        "IEUM_KAFKA_BOOTSTRAP": bootstrap,
        "IEUM_PORT": str(port),
        "IEUM_PUBLIC_URL": base,
        "IEUM_LOG_LEVEL": "warning",
        # Its data dir is its own: it must open the signing keys the earlier hubs made.
        "IEUM_AUTH_KEK": base64.b64encode(kek.current().key).decode(),
        **env,
    }
    with tempfile.TemporaryDirectory() as data_dir:
        environment["IEUM_DATA_DIR"] = data_dir
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "ieum"), "serve", "--no-demo"],
            env=environment,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            lines = queue.SimpleQueue[str | None]()
            threading.Thread(target=_read, args=(process.stdout, lines), daemon=True).start()
            deadline = time.monotonic() + 180
            while (line := lines.get(timeout=max(deadline - time.monotonic(), 0.1))) is not None:
                if line.startswith("  Processes"):
                    print(line.rstrip())
                if "Press Ctrl-C to stop." in line:
                    break
            else:
                raise RuntimeError("the hub stopped while starting")
            yield base, process.pid
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _read(stream: IO[str], lines: queue.SimpleQueue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


async def run(
    readings: int,
    clients_: int,
    seconds: float,
    workers: int | None,
    only: list[str],
    compare: bool,
    rounds: int,
) -> None:
    settings = Settings.from_env(ingest=False, log_level="warning")
    with servers(settings) as (url, bootstrap):
        await prepare_database(url, settings)
        start = await load(url, readings, settings)
        pool = await asyncpg.create_pool(url)
        reader = await clients.create(pool, name="bench", scope_names="sensors:read")
        await pool.close()
        chosen = [
            name
            for name in WORKLOADS
            if "baseline" in name or not only or any(word in name for word in only)
        ]
        misses = [name for name in chosen if "distinct" in name or "baseline" in name]
        # IEUM_WORKERS only when asked: the first configuration is what `ieum serve` does.
        asked = {} if workers is None else {"IEUM_WORKERS": str(workers)}
        count = workers or cores.http_processes()
        named = f"IEUM_WORKERS={workers}" if workers else "IEUM_WORKERS unset: one per core"
        configurations: list[tuple[str, str, dict[str, str], list[str]]] = [
            (
                "default",
                f"`ieum serve` with default settings: {count} processes ({named})",
                {},
                chosen,
            )
        ]
        if compare:
            configurations += [
                (
                    "in SQL",
                    f"{count} processes, every aggregate in PostgreSQL (IEUM_ROLLUP_MEMORY_MB=0)",
                    {"IEUM_ROLLUP_MEMORY_MB": "0"},
                    misses,
                ),
                (
                    "1 process",
                    "1 process (IEUM_WORKERS=1), rollups in memory",
                    {"IEUM_WORKERS": "1"},
                    misses,
                ),
            ]
        print(f"{clients_} concurrent clients, {seconds:.0f} s per workload")
        results: dict[str, list[dict[str, float]]] = {key: [] for key, *_ in configurations}
        for round_ in range(rounds):
            for key, title, changes, names in configurations:
                print(f"\n{title}" + (f", round {round_ + 1} of {rounds}" if rounds > 1 else ""))
                with hub(url, bootstrap, {**asked, **changes}) as (base, pid):
                    p99s = await measure_hub(
                        url, base, pid, reader, start, names, clients_, seconds
                    )
                results[key].append(p99s)
        summarize(results, count)


def summarize(results: dict[str, list[dict[str, float]]], count: int) -> None:
    """p99 of each workload over the rounds, and the headline line of the defaults."""
    print("\np99 over the rounds: median (lowest-highest)")
    medians: dict[str, float] = {}
    for key, rounds in results.items():
        for name in rounds[0]:
            values = sorted(p99s[name] * 1000 for p99s in rounds)
            median = statistics.median(values)
            print(f"{key:10} {name:42} {median:7.1f} ms ({values[0]:.1f}-{values[-1]:.1f})")
            if key == "default":
                medians[name] = median
    shorten = {"series": "series", "heat map": "heatmap", "route exposure": "route"}
    misses = " ".join(
        f"{shorten[name.split(',')[0]]}_miss_p99_ms={value:.1f}"
        for name, value in medians.items()
        if name.endswith("distinct")
    )
    baseline = medians.get("baseline __typename", float("nan"))
    print(
        f"\nsensor_queries: workers={count} rounds={len(results['default'])}"
        f" baseline_p99_ms={baseline:.1f} {misses}"
    )


async def measure_hub(
    url: str,
    base: str,
    pid: int,
    reader: clients.NewClient,
    start: datetime,
    names: list[str],
    clients_: int,
    seconds: float,
) -> dict[str, float]:
    """Measure and print each workload with the CPU a request took in the hub's processes
    and in PostgreSQL (less noisy than latency on a shared machine); return the p99s in
    seconds."""
    token = access_token(base, reader)
    p99s: dict[str, float] = {}
    connections = Connections(base, {"Authorization": f"Bearer {token}"})
    try:

        async def post(query: str, variables: Variables) -> None:
            if callable(variables):
                variables = variables()
            body = orjson.dumps({"query": query, "variables": variables})
            status, answer = await connections.post("/graphql", body)
            assert status == 200, answer
            assert "errors" not in orjson.loads(answer), answer

        began = time.perf_counter()
        for name in names:
            query, make = WORKLOADS[name]
            variables = make(start, began)
            call = lambda q=query, v=variables: post(q, v)  # noqa: E731
            async with writing(url, start, began) if "writing" in name else _nothing():
                await call()  # warm caches once
                if "distinct" in name:  # each process reads the rollups it is asked about
                    report(f"{name} (first {COLD} s)", await measure(call, clients_, COLD), COLD)
                clock = await CpuClock.start(url, {"hub": pid})  # with its processes
                latencies = await measure(call, clients_, seconds)
                spent = await clock.stop()
                report(name, latencies, seconds)
                p99s[name] = statistics.quantiles(latencies, n=100)[98]
                hub_cpu = spent.get("hub", 0.0)
                database = spent.get("PostgreSQL", 0.0)
                print(
                    f"{'':42} CPU a request: hub {hub_cpu / len(latencies) * 1000:.2f} ms,"
                    f" PostgreSQL {database / len(latencies) * 1000:.2f} ms"
                )
    finally:
        await connections.close()
    return p99s


def access_token(base: str, reader: clients.NewClient) -> str:
    """A client-credentials token for the bench client, before any load."""
    address = urlsplit(base)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=10)
    credentials = f"{reader.client_id}:{reader.client_secret or ''}".encode()
    connection.request(
        "POST",
        "/oauth/token",
        body="grant_type=client_credentials",
        headers={
            "Authorization": "Basic " + base64.b64encode(credentials).decode(),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    answer = connection.getresponse()
    assert answer.status == 200, answer.read()
    return str(orjson.loads(answer.read())["access_token"])


COLD = 3


@contextlib.asynccontextmanager
async def writing(url: str, start: datetime, began: float) -> AsyncIterator[None]:
    """Ingest-like writes, four a second, into the newest minute of the "last hour": each
    raises the version of the slot, so the hub reads that slot's rollups again."""
    conn = await db.connect(url, Settings())
    await ingest_store.prepare_connection(conn)
    cells = [h3.latlng_to_cell(*CENTRE, H3_RESOLUTION), h3.latlng_to_cell(*ROUTE[0], H3_RESOLUTION)]

    async def write() -> None:
        while True:
            now = start + timedelta(hours=2, seconds=time.perf_counter() - began)
            minute = now.replace(second=0, microsecond=0) - timedelta(minutes=1)
            rows = [
                RollupRow(cell, minute, [1] * 54, [20.0] * 54, [400.0] * 54, [20.0] * 54,
                          [20.0] * 54, [7])
                for cell in cells
            ]  # fmt: skip
            async with conn.transaction():
                await ingest_store.upsert_rollups(conn, rows)
            await asyncio.sleep(0.25)

    task = asyncio.create_task(write())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await conn.close()


@contextlib.asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield


def window(start: datetime, shift: timedelta, length: int = 60) -> dict[str, object]:
    return {
        "from": (start + shift).isoformat(),
        "to": (start + shift + timedelta(minutes=length)).isoformat(),
    }


def route(start: datetime, shift: timedelta, length: int = 60) -> dict[str, object]:
    return {
        "path": [{"lat": a, "lng": b} for a, b in ROUTE],
        "at": (start + shift + timedelta(minutes=length)).isoformat(),
        "minutes": length,
    }


def same(shape: Shape) -> Make:
    """One question from every client, an hour into the data."""
    return lambda start, began: shape(start, timedelta(hours=1))


def last_hour(shape: Shape) -> Make:
    """The hour up to "now", two hours into the data, as a client's clock says."""
    return lambda start, began: (
        lambda: shape(start, timedelta(hours=1, seconds=time.perf_counter() - began))
    )


def distinct(shape: Shape) -> Make:
    """Windows inside the data over minutes no recent request covered: each (start
    minute, length) pair once per pass over all 4,636 of them, far longer than the cache
    keeps an answer; at a random second in the minute."""

    def make(start: datetime, began: float) -> Variables:
        pairs: list[tuple[int, int]] = []

        def variables() -> dict[str, object]:
            if not pairs:
                pairs.extend((m, n) for m in range(76) for n in range(30, 91))
                random.shuffle(pairs)
            minute, length = pairs.pop()
            at = timedelta(minutes=minute, seconds=random.uniform(0.001, 59.999))
            return shape(start, at, length)

        return variables

    return make


Variables = dict[str, object] | Callable[[], dict[str, object]]
SERIES = """query($from: DateTime!, $to: DateTime!) {
  sensorSeries(area: {district: "11140"}, metric: "pm2_5", from: $from, to: $to,
               bucket: FIVE_MINUTES) { bucket value { mean count } }
}"""
HEATMAP = """query($from: DateTime!, $to: DateTime!) {
  sensorHeatmap(area: {bbox: {south: 37.55, west: 126.96, north: 37.58, east: 127.0}},
                metric: "pm2_5", from: $from, to: $to, resolution: 8) { cell value { mean } }
}"""
EXPOSURE = """query($path: [PointInput!]!, $at: DateTime!, $minutes: Int!) {
  routeExposure(path: $path, at: $at, metric: "pm2_5", windowMinutes: $minutes) {
    average worst { value { mean } }
  }
}"""


Shape = Callable[..., dict[str, object]]
Make = Callable[[datetime, float], Variables]
WORKLOADS: dict[str, tuple[str, Make]] = {
    "baseline __typename": ("{ __typename }", lambda start, began: {}),
    "series, same": (SERIES, same(window)),
    "series, last hour": (SERIES, last_hour(window)),
    "series, last hour, ingest writing": (SERIES, last_hour(window)),
    "series, distinct": (SERIES, distinct(window)),
    "heat map, same": (HEATMAP, same(window)),
    "heat map, last hour": (HEATMAP, last_hour(window)),
    "heat map, last hour, ingest writing": (HEATMAP, last_hour(window)),
    "heat map, distinct": (HEATMAP, distinct(window)),
    "route exposure, same": (EXPOSURE, same(route)),
    "route exposure, last hour": (EXPOSURE, last_hour(route)),
    "route exposure, last hour, ingest writing": (EXPOSURE, last_hour(route)),
    "route exposure, distinct": (EXPOSURE, distinct(route)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=10_000_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="hub processes (IEUM_WORKERS); unset, the default: one per core",
    )
    parser.add_argument(
        "--only", action="append", default=[], help="run the workloads whose names hold this"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every configuration this many times in turn, on the same readings",
    )
    parser.add_argument(
        "--no-compare",
        dest="compare",
        action="store_false",
        help="skip the misses with rollups in PostgreSQL and with one process",
    )
    args = parser.parse_args()
    asyncio.run(
        run(
            args.readings,
            args.clients,
            args.seconds,
            args.workers,
            args.only,
            args.compare,
            args.rounds,
        )
    )


if __name__ == "__main__":
    main()
