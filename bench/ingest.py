"""Ingest throughput of one worker, against a bare COPY of the same rows in the same run.

    .venv/bin/python bench/ingest.py [--messages 100000] [--vehicles 1000]
                                     [--encodings binary,json] [--runs 1]

Starts embedded PostgreSQL and broker (or uses IEUM_DATABASE_URL / IEUM_KAFKA_BOOTSTRAP,
in a database of its own), registers the devices, produces the messages (every message
carries all catalog metrics) in each encoding asked for (docs/sensors.md: JSON, the
default, and the compact binary one), then runs `ieum ingest` in a process of its own on
each topic and times it from the first batch stored to the last offset (`steady`), and
from the moment it starts its consumer (`from_start`, the group join included). It
reports the worker's and PostgreSQL's CPU per message (/proc) and the worker's memory.

The baseline COPYs the same readings, already parsed, into an unindexed temporary copy of
the readings table: from Python tuples through asyncpg (as this benchmark always did: the
`copy_ratio` denominator), and as a payload prebuilt in PostgreSQL's binary format (the
database's own limit for this row shape; that ratio is printed too). A temporary table
writes no WAL and keeps no index, so a third, fairer baseline COPYs the same tuples into
an ordinary (logged) copy of the readings table with the same keys (its primary key and
its index on cell and time): the `keyed` ratio, printed beside the others, never the
last line's.

Each worker run gets a database of its own (the same readings, new to it), and the bare
COPY runs in it afterwards. The last line is the first encoding's:
`ingest: msgs_per_s=N copy_ratio=R from_start=M` (steady messages a second, its ratio to
the bare COPY's rows a second from tuples, messages a second from the worker's start);
with several runs, medians, the spread printed above it. On a shared machine the rates
follow the other load; the CPU a message (per process, from /proc) does much less.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer
from harness import CpuClock, fresh_database, servers

from adapters.sandbox import taxi_fleet as simulate
from auth import clients
from hub.bootstrap import prepare_database
from hub.core import db
from hub.core.settings import Settings
from hub.domains import installed
from resolvers.sensors import ingest_store, message_binary
from resolvers.sensors.catalog import metrics
from resolvers.sensors.ingest import ensure_topics
from resolvers.sensors.message import parse

installed()  # the domains' settings sections, as `ieum` loads them
IEUM = Path(sys.executable).with_name("ieum")


def make_messages(count: int, vehicles: int) -> list[tuple[bytes, bytes]]:
    """The simulator's fleet driving Seoul roads, one message a second per vehicle, with
    every catalog metric (the simulator's realistic ones plus the rest filled in)."""
    rng = random.Random(3)
    fleet = simulate.fleet(vehicles)
    start = datetime.now(UTC) - timedelta(hours=6)
    rest = {m.name: round(m.min + (m.max - m.min) * 0.25, 3) for m in metrics()}
    out: list[tuple[bytes, bytes]] = []
    second = 0
    while len(out) < count:
        now = start + timedelta(seconds=second)
        for key, value in simulate.messages(fleet, now, 1.0, 0.0, rng):
            body = orjson.loads(value)
            body["metrics"] = rest | body["metrics"]
            out.append((key, orjson.dumps(body)))
        second += 1
    return out[:count]


def as_binary(value: bytes) -> bytes:
    """The same message in the compact binary encoding."""
    body = orjson.loads(value)
    return message_binary.encode(
        body["device_id"],
        body["vehicle_id"],
        datetime.fromisoformat(body["ts"]),
        body["position"]["lat"],
        body["position"]["lng"],
        body["metrics"],
        body.get("speed_kmh"),
        body.get("heading_deg"),
    )


@dataclass
class Run:
    steady: float  # messages a second after the first batch
    from_start: float  # messages a second from the worker's consumer start
    worker_us: float  # worker CPU per message, steady part
    postgres_us: float  # PostgreSQL CPU per message, steady part
    broker_us: float  # the embedded broker's, if it runs here
    rss_mb: float  # worker's resident memory at the end
    peak_mb: float  # and its peak


async def produce(bootstrap: str, topic: str, data: list[tuple[bytes, bytes]]) -> None:
    await ensure_topics(bootstrap, 4, topic)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks=1)
    await producer.start()
    try:
        for key, value in data:
            await producer.send(topic, value=value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def one_worker(
    url: str, bootstrap: str, pool: asyncpg.Pool, topic: str, messages: int
) -> Run:
    """`ieum ingest` on the topic, in a process of its own, until every offset is stored."""
    env = {**os.environ, "IEUM_DATABASE_URL": url, "IEUM_KAFKA_BOOTSTRAP": bootstrap}
    process = await asyncio.create_subprocess_exec(
        str(IEUM),
        *("ingest", "--topic", topic, "--group", f"bench-{topic}"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        drain = asyncio.create_task(_last_lines(process.stderr))
        while b"ingesting from" not in (line := await process.stdout.readline()):
            if not line:  # it exited: say why
                raise RuntimeError(f"ieum ingest exited before it started:\n{await drain}")
        started = time.perf_counter()
        first_batch = 0
        clock: CpuClock | None = None
        while (done := await _stored(pool, topic)) < messages:
            if not first_batch and done:
                first_batch, first_at = done, time.perf_counter()
                clock = await CpuClock.start(url, {"worker": process.pid, **_broker(bootstrap)})
            await asyncio.sleep(0.02)
        finished = time.perf_counter()
        assert clock is not None
        cpu = await clock.stop()
        rss, peak = _memory(process.pid)
    finally:
        if process.returncode is None:
            process.terminate()
        await asyncio.wait_for(process.wait(), 30)
    steady_messages = messages - first_batch
    return Run(
        steady=steady_messages / (finished - first_at),
        from_start=messages / (finished - started),
        worker_us=cpu.get("worker", 0.0) / steady_messages * 1e6,
        postgres_us=cpu.get("PostgreSQL", 0.0) / steady_messages * 1e6,
        broker_us=cpu.get("broker", 0.0) / steady_messages * 1e6,
        rss_mb=rss,
        peak_mb=peak,
    )


async def _last_lines(stream: asyncio.StreamReader, keep: int = 20) -> str:
    """What a process writes to stderr (read all along, so it never blocks on a full
    pipe), its last lines once it ends."""
    lines: list[bytes] = []
    while line := await stream.readline():
        lines = [*lines[-keep + 1 :], line]
    return b"".join(lines).decode(errors="replace")


def _broker(bootstrap: str) -> dict[str, int]:
    """The broker's process, if it runs on this machine (the embedded one)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if f"//{bootstrap}\0".encode() in cmdline.read_bytes():
                return {"broker": int(cmdline.parent.name)}
    return {}


def _memory(pid: int) -> tuple[float, float]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return tuple(int(fields[name].split()[0]) / 1024 for name in ("VmRSS", "VmHWM"))  # type: ignore[return-value]


async def bare_copy(url: str, data: list[tuple[bytes, bytes]]) -> tuple[float, float, float]:
    """Rows a second into an unindexed temporary copy of the readings table: the payload
    prebuilt in binary COPY format, and from Python tuples through asyncpg; and from the
    tuples into a logged copy with the readings' keys."""
    readings = [parse(value) for _, value in data]
    records = [
        (r.ts, r.device_id, r.vehicle_id, r.lat, r.lng, r.cell, r.speed_kmh, r.heading_deg,
         r.packed)
        for r in readings
    ]  # fmt: skip
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TEMP TABLE bare (LIKE sensor_readings INCLUDING DEFAULTS)")
        started = time.perf_counter()
        for i in range(0, len(records), 5000):
            await conn.copy_records_to_table(
                "bare", columns=ingest_store.READING_COLUMNS, records=records[i : i + 5000]
            )
        tuples = len(records) / (time.perf_counter() - started)
        payload = io.BytesIO()
        await conn.copy_from_table(
            "bare", columns=ingest_store.READING_COLUMNS, output=payload, format="binary"
        )
        prebuilt = []
        for _ in range(3):
            await conn.execute("TRUNCATE bare")
            started = time.perf_counter()
            await conn.copy_to_table(
                "bare",
                columns=ingest_store.READING_COLUMNS,
                source=_once(payload.getvalue()),
                format="binary",
            )
            prebuilt.append(len(records) / (time.perf_counter() - started))
        await conn.execute(
            "CREATE TABLE bare_keyed (LIKE sensor_readings INCLUDING DEFAULTS);"
            "ALTER TABLE bare_keyed ADD PRIMARY KEY (device_id, ts);"
            "CREATE INDEX ON bare_keyed (cell, ts)"
        )
        started = time.perf_counter()
        for i in range(0, len(records), 5000):
            await conn.copy_records_to_table(
                "bare_keyed", columns=ingest_store.READING_COLUMNS, records=records[i : i + 5000]
            )
        keyed = len(records) / (time.perf_counter() - started)
        return statistics.median(prebuilt), tuples, keyed
    finally:
        await conn.close()


async def _once(payload: bytes):  # type: ignore[no-untyped-def]
    yield payload


async def run(messages: int, vehicles: int, encodings: list[str], runs: int) -> None:
    settings = Settings.from_env()
    data = make_messages(messages, vehicles)
    encoded = {
        "json": data,
        "binary": [(key, as_binary(value)) for key, value in data] if "binary" in encodings else [],
    }
    values = len(orjson.loads(data[0][1])["metrics"])
    results: dict[str, list[tuple[Run, float, float]]] = {name: [] for name in encodings}
    keyed_rates: dict[str, list[float]] = {name: [] for name in encodings}
    bare: list[float] = []
    with servers(settings) as (server_url, bootstrap):
        for attempt in range(runs):
            for name in encodings:
                # Each worker run on a database of its own: the same readings, new to it.
                async with fresh_database(server_url, "ingest") as url:
                    await prepare_database(url, settings)
                    pool = await db.create_pool(url, settings)
                    try:
                        owner = await clients.create(
                            pool, name="bench fleet", scope_names="sensors:ingest"
                        )
                        await simulate.register(pool, owner.client_id, simulate.fleet(vehicles))
                        topic = f"bench.telemetry.{int(time.time())}.{name}.{attempt}"
                        await produce(bootstrap, topic, encoded[name])
                        result = await one_worker(url, bootstrap, pool, topic, messages)
                        prebuilt, tuples, keyed = await bare_copy(url, data)
                    finally:
                        await pool.close()
                bare.append(prebuilt)
                results[name].append((result, tuples, prebuilt))
                keyed_rates[name].append(keyed)
                print(
                    f"{name:6} run {attempt + 1}: {result.steady:7.0f} msg/s steady,"
                    f" {result.from_start:7.0f} from start ({len(encoded[name][0][1])} bytes,"
                    f" {values} values a message); CPU a message: worker"
                    f" {result.worker_us:5.1f} µs, PostgreSQL {result.postgres_us:5.1f} µs, broker"
                    f" {result.broker_us:5.1f} µs;"
                    f" worker RSS {result.rss_mb:.0f} MB (peak {result.peak_mb:.0f});"
                    f" bare COPY {tuples:7.0f} rows/s from tuples, {prebuilt:7.0f} prebuilt,"
                    f" {keyed:7.0f} keyed; ratios {result.steady / tuples:.3f},"
                    f" {result.steady / prebuilt:.3f}, {result.steady / keyed:.3f}",
                    flush=True,
                )

    print(f"\n{messages} messages, {vehicles} vehicles, {runs} run(s); median [min .. max]:")
    lines = []
    for name in encodings:
        runs_of = results[name]
        steady = [r.steady for r, _, _ in runs_of]
        start = [r.from_start for r, _, _ in runs_of]
        ratios = [r.steady / tuples for r, tuples, _ in runs_of]
        strict = [r.steady / prebuilt for r, _, prebuilt in runs_of]
        fair = [r.steady / k for (r, _, _), k in zip(runs_of, keyed_rates[name], strict=True)]
        worker = [r.worker_us for r, _, _ in runs_of]
        others = [r.postgres_us + r.broker_us for r, _, _ in runs_of]
        print(
            f"  {name}: steady {_spread(steady)} msg/s, from start {_spread(start)} msg/s;"
            f" ratio to the bare COPY {_spread(ratios, 3)} (from tuples),"
            f" {_spread(strict, 3)} (prebuilt payload), {_spread(fair, 3)} (keyed, logged)\n"
            f"    CPU a message: worker {_spread(worker, 1)} µs, PostgreSQL"
            f" {_spread([r.postgres_us for r, _, _ in runs_of], 1)} µs, broker"
            f" {_spread([r.broker_us for r, _, _ in runs_of], 1)} µs; with a core each for the"
            f" worker and for the database and broker, CPU would allow"
            f" {1e6 / max(statistics.median(worker), statistics.median(others)):.0f} msg/s\n"
            f"    worker RSS {_spread([r.rss_mb for r, _, _ in runs_of])} MB, peak"
            f" {_spread([r.peak_mb for r, _, _ in runs_of])} MB"
        )
        lines.append(
            f"ingest: msgs_per_s={statistics.median(steady):.0f}"
            f" copy_ratio={statistics.median(ratios):.3f} from_start={statistics.median(start):.0f}"
        )
    from_tuples = [tuples for runs_of in results.values() for _, tuples, _ in runs_of]
    keyed_all = [k for rates in keyed_rates.values() for k in rates]
    print(
        f"  bare COPY (no index, no rollups) {_spread(from_tuples)} rows/s from tuples through"
        f" asyncpg, {_spread(bare)} rows/s as a prebuilt payload; into a logged table with the"
        f" readings' keys {_spread(keyed_all)} rows/s from tuples"
    )
    print(lines[0])


def _spread(values: list[float], digits: int = 0) -> str:
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{mid:.{digits}f} [{low:.{digits}f} .. {high:.{digits}f}]"


async def _stored(pool: asyncpg.Pool, topic: str) -> int:
    return await pool.fetchval(
        "SELECT coalesce(sum(next_offset), 0)::bigint FROM ingest_offsets WHERE topic = $1", topic
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--vehicles", type=int, default=1000)
    parser.add_argument(
        "--encodings",
        default="binary,json",
        help="comma-separated, of binary and json; the first gives the last line",
    )
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    encodings = [name.strip() for name in args.encodings.split(",") if name.strip()]
    if not encodings or set(encodings) - {"binary", "json"}:
        parser.error("--encodings takes binary and/or json")
    asyncio.run(run(args.messages, args.vehicles, encodings, args.runs))


if __name__ == "__main__":
    main()
