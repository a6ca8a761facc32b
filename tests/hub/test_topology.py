"""Ieum deployed as docs/deploying.md describes, on loopback: one `ieum serve --subgraph`
process per domain and a second replica of sensors behind a load balancer, Hive Gateway in
front, two `ieum ingest` processes in one consumer group, a broker of its own and the
machine's PostgreSQL. What a city would notice if the split went wrong is a lost or doubled
reading or an answer that differs from the single-process hub, so counts and answers are
compared exactly."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka.partitioner import DefaultPartitioner
from h3.api import basic_int as h3
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.app import create_app
from hub.core import db
from hub.core.servers import Servers
from hub.core.settings import Settings
from hub.embedded import broker
from hub.embedded.ports import free_port
from hub.serve import serving
from resolvers.sensors.catalog import by_name
from resolvers.sensors.ingest import ensure_topics
from resolvers.sensors.message import H3_RESOLUTION
from tests.helpers import graphql
from tests.oauth import Hub
from tests.schema.test_federation import compose, served_sdl, stopped
from tests.sensors.helpers import (
    message,
    new_topic,
    partner,
    produce,
    recent_minute,
    register,
)

pytestmark = [pytest.mark.db, pytest.mark.slow]

__all__ = ["compose"]  # the federation tests' fixture: npm packages installed once in .cache/

IEUM = str(Path(sys.executable).parent / "ieum")
PARTITIONS = 4
GROUP = "ieum-ingest"  # the default group, as a city's workers would use it
JUNG_GU = [(37.5665, 126.9780), (37.5640, 126.9850), (37.5600, 126.9920)]  # 중구 (11140)
STEPS = 300  # messages per vehicle, 8 s apart: 40 minutes, inside airQuality's last hour


def fleet() -> list[tuple[str, str]]:
    """Eight taxis whose keys land two on each partition, so both workers get messages
    whichever two partitions each is given."""
    chosen: dict[int, list[str]] = defaultdict(list)
    for i in itertools.count():
        vehicle = f"topo-car-{i}"
        partition = DefaultPartitioner()(vehicle.encode(), list(range(PARTITIONS)), [])
        if len(chosen[partition]) < 2:
            chosen[partition].append(vehicle)
        if sum(map(len, chosen.values())) == 2 * PARTITIONS:
            break
    return [(f"topo-{v}", v) for vehicles in chosen.values() for v in vehicles]


FLEET = fleet()
N = STEPS * len(FLEET)
PER_PARTITION = {p: 2 * STEPS for p in range(PARTITIONS)}  # two taxis' messages each


def messages(start: datetime) -> list[tuple[bytes, bytes, tuple[int, datetime, float, float]]]:
    """(key, message, (cell, minute, pm2_5, pm10)) for every reading sent."""
    sent = []
    for step in range(STEPS):
        at = start + timedelta(seconds=8 * step)
        for i, (device, vehicle) in enumerate(FLEET):
            lat, lng = JUNG_GU[(i + step) % len(JUNG_GU)]
            pm25 = float(10 + (7 * i + step) % 30)  # whole numbers: float32 and sums exact
            metrics = {"pm2_5": pm25, "pm10": pm25 * 2, "noise_laeq": 60.0 + i}
            cell = h3.latlng_to_cell(lat, lng, H3_RESOLUTION)
            minute = at.replace(second=0, microsecond=0)
            body = message(device, vehicle, at, lat, lng, metrics)
            sent.append((vehicle.encode(), body, (cell, minute, pm25, pm25 * 2)))
    return sent


async def offsets(pool: asyncpg.Pool, topic: str) -> dict[int, int]:
    """The ingest group's positions as stored with the data, in PostgreSQL."""
    rows = await pool.fetch(
        "SELECT partition, next_offset FROM ingest_offsets WHERE group_id = $1 AND topic = $2",
        GROUP,
        topic,
    )
    return {row["partition"]: row["next_offset"] for row in rows}


async def stored_up_to(
    pool: asyncpg.Pool, topic: str, target: dict[int, int], within: float
) -> None:
    """Until the stored offsets reach what was produced. Counted from what we sent, not
    asked of the broker: Tansu answers ListOffsets(latest) with the start of the last
    batch plus one, which the shared `wait_ingested` helper would take for the end."""
    deadline = time.monotonic() + within
    while (found := await offsets(pool, topic)) != target:
        assert time.monotonic() < deadline, (found, target)
        await asyncio.sleep(0.2)


class Process:
    """A real process (`ieum …` or `node …`) with its output in a file, stopped with
    SIGTERM as an orchestrator stops it, or killed when it is stateless and ignores
    SIGTERM (gateway.mjs does, so waiting would only add ten seconds)."""

    def __init__(self, name: str, log: Path, *, graceful: bool = True) -> None:
        self.name = name
        self.log = log
        self.graceful = graceful
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, *command: str, env: dict[str, str] | None = None) -> Process:
        with self.log.open("wb") as out:
            self.process = await asyncio.create_subprocess_exec(
                *command, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT
            )
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def wait_for(self, ready: Callable[[], Any], what: str, within: float = 45) -> None:
        """Until `ready()` holds (it may be a coroutine function); fails with the log."""
        deadline = time.monotonic() + within
        while True:
            assert self.process is not None
            if self.process.returncode is not None:
                raise AssertionError(f"{self.name} exited before {what}:\n{self.output()}")
            result = ready()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no {what} in {within} s:\n{self.output()}")
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        if self.graceful:
            await stopped(self.process)
        else:
            self.process.kill()
            await self.process.wait()


async def answers(url: str) -> bool:
    """`/readyz` says the process is ready for traffic, as a load balancer asks."""
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            return (await http.get(f"{url}/readyz")).status_code == 200
    except httpx.HTTPError:
        return False


def assigned(worker: Process) -> list[set[int]]:
    """Every assignment the worker logged, in order."""
    found = re.findall(r"ingest\.assigned partitions=\[([\d, ]*)\]", worker.output())
    return [{int(p) for p in line.split(",") if p.strip()} for line in found]


def balancer(targets: list[str]) -> Starlette:
    """The load balancer a city puts in front of a subgraph's replicas (a Kubernetes
    Service, an ALB): here round robin per request, so two requests reach both."""
    turn = itertools.cycle(targets)
    passed = ("content-type", "accept", "authorization")

    async def forward(request: Request) -> Response:
        async with httpx.AsyncClient(base_url=next(turn), timeout=30) as http:
            upstream = await http.request(
                request.method,
                request.url.path,
                params=request.query_params,
                content=await request.body(),
                headers={k: v for k, v in request.headers.items() if k in passed},
            )
        media = upstream.headers.get("content-type")
        return Response(upstream.content, upstream.status_code, media_type=media)

    return Starlette(routes=[Route("/{path:path}", forward, methods=["GET", "POST"])])


def operations(metrics: str) -> float:
    """GraphQL operations a hub process executed, from its /metrics."""
    pattern = r"^ieum_graphql_requests_total\{[^}]*\} ([\d.e+]+)$"
    return sum(float(v) for v in re.findall(pattern, metrics, re.MULTILINE))


@dataclass
class Topology:
    gateway: str  # what clients reach: Hive Gateway over every subgraph
    hub: str  # the whole hub in one process, on the same database and broker
    platform: str  # the platform subgraph; it also issues tokens (/oauth/*)
    sensors: list[str]  # the two sensors replicas behind the load balancer
    workers: list[Process]
    pool: asyncpg.Pool
    topic: str
    assignments: list[int]  # lines each worker had logged when devices started sending
    sent: list[tuple[int, datetime, float, float]]
    seconds: float  # from the first process started to every message stored


@pytest.fixture(scope="module")
async def topology(
    compose: Path, migrated_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Topology]:
    started = time.monotonic()
    tmp = tmp_path_factory.mktemp("topology")
    topic = new_topic()
    gateway_port = free_port()
    public = f"http://127.0.0.1:{gateway_port}"  # every process's IEUM_PUBLIC_URL
    async with contextlib.AsyncExitStack() as stack:
        tansu = broker.start(tmp / "broker.log")  # standalone: not the session's broker
        stack.callback(tansu.stop)
        pool = await db.create_pool(migrated_url, Settings.from_env())
        stack.push_async_callback(pool.close)
        await ensure_topics(tansu.bootstrap, PARTITIONS, topic)
        env = {k: v for k, v in os.environ.items() if not k.startswith("IEUM_")} | {
            "IEUM_DATABASE_URL": migrated_url,
            "IEUM_AUTH_KEK": os.environ["IEUM_AUTH_KEK"],  # set by conftest for the run
            "IEUM_KAFKA_BOOTSTRAP": tansu.bootstrap,
            "IEUM_TELEMETRY_TOPIC": topic,
            "IEUM_TELEMETRY_PARTITIONS": str(PARTITIONS),
            "IEUM_PUBLIC_URL": public,
            "IEUM_INGEST": "false",
            "IEUM_LOG_LEVEL": "info",
            # A replica per container of one process, as deploying.md advises where
            # /metrics is scraped: with several, a scrape sees one process's counts.
            "IEUM_WORKERS": "1",
        }
        hubs: list[tuple[Process, str]] = []
        for name in ("platform", "sensors", "sensors"):
            process = Process(f"{name}-{len(hubs)}", tmp / f"{name}-{len(hubs)}.log")
            stack.push_async_callback(process.stop)
            port = free_port()
            own = {"IEUM_PORT": str(port), "IEUM_DATA_DIR": str(tmp / process.name)}
            await process.start(IEUM, "serve", "--subgraph", name, "--no-demo", env=env | own)
            hubs.append((process, f"http://127.0.0.1:{port}"))
        workers = []
        for i in range(2):
            worker = Process(f"ingest-{i}", tmp / f"ingest-{i}.log")
            stack.push_async_callback(worker.stop)
            workers.append(await worker.start(IEUM, "ingest", "--group", GROUP, env=env))
        for process, url in hubs:
            await process.wait_for(lambda url=url: answers(url), "/readyz 200")
        platform, sensors = hubs[0][1], [url for _, url in hubs[1:]]

        lb_port = free_port()
        lb = await stack.enter_async_context(serving(balancer(sensors), lb_port))
        subgraphs = {"platform": platform, "sensors": lb}
        specs = []
        for name, url in subgraphs.items():
            (tmp / f"{name}.graphql").write_text(await served_sdl(url))
            specs.append(f"{name}={tmp / name}.graphql={url}/graphql")
        composing = await asyncio.create_subprocess_exec(
            "node", str(compose), *specs, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(composing.communicate(), 60)
        composition = json.loads(out)
        assert "errors" not in composition, composition
        (tmp / "supergraph.graphql").write_text(composition["supergraphSdl"])
        gateway = Process("gateway", tmp / "gateway.log", graceful=False)
        stack.push_async_callback(gateway.stop)
        await gateway.start(
            "node", str(compose.parent / "gateway.mjs"), str(tmp / "supergraph.graphql"),
            str(gateway_port),
        )  # fmt: skip
        await gateway.wait_for(lambda: "listening" in gateway.output(), "listening")

        # The single-process hub the split one must match, on the same database.
        settings = Settings.from_env(port=free_port(), public_url=public)
        app = create_app(settings, Servers(migrated_url, tansu.bootstrap))
        hub = await stack.enter_async_context(serving(app, settings.port))

        # Both workers hold partitions, and the group has settled, before devices send.
        def settled() -> bool:
            final = [assigned(w)[-1] if assigned(w) else set() for w in workers]
            return (
                all(final)
                and set.union(*final) == set(range(PARTITIONS))
                and not (final[0] & final[1])
            )

        await workers[0].wait_for(settled, "assignment shared by both workers")
        assignments = [len(assigned(worker)) for worker in workers]
        await register(pool, await partner(pool), FLEET)
        sent = messages(recent_minute(45))
        assert await produce(tansu.bootstrap, topic, [(k, m) for k, m, _ in sent]) == N
        await stored_up_to(pool, topic, PER_PARTITION, within=60)
        yield Topology(
            gateway=public,
            hub=hub,
            platform=platform,
            sensors=sensors,
            workers=workers,
            pool=pool,
            topic=topic,
            assignments=assignments,
            sent=[s for _, _, s in sent],
            seconds=time.monotonic() - started,
        )


async def test_every_message_is_stored_once_by_two_workers(topology: Topology) -> None:
    """N messages in, N readings stored; the per-minute rollups are exactly the sums of
    what was sent (a batch written twice would double them); each worker took its own
    partitions and the group did not rebalance while they ingested."""
    print(f"topology up and {N} messages stored in {topology.seconds:.1f} s")
    assert await topology.pool.fetchval("SELECT count(*) FROM sensor_readings") == N
    assert await offsets(topology.pool, topology.topic) == PER_PARTITION

    final = [assigned(worker) for worker in topology.workers]
    mine = [lines[-1] for lines in final]
    # Nothing moved once devices sent: any later line names the same partitions (a worker
    # that meets a partition without a position logs its assignment again).
    for lines, before, last in zip(final, topology.assignments, mine, strict=True):
        assert all(later == last for later in lines[before - 1 :]), final
    assert mine[0] and mine[1] and not mine[0] & mine[1], final
    assert mine[0] | mine[1] == set(range(PARTITIONS))

    expected: dict[tuple[int, datetime], list[list[float]]] = defaultdict(lambda: [[], []])
    for cell, minute, pm25, pm10 in topology.sent:
        expected[(cell, minute)][0].append(pm25)
        expected[(cell, minute)][1].append(pm10)
    metrics = by_name()
    pm25_i, pm10_i = metrics["pm2_5"].id + 1, metrics["pm10"].id + 1
    rows = await topology.pool.fetch(
        "SELECT cell, bucket, n[$1] AS n25, sum[$1] AS s25, min[$1] AS lo25, max[$1] AS hi25,"
        " n[$2] AS n10, sum[$2] AS s10 FROM sensor_rollups",
        pm25_i,
        pm10_i,
    )
    found = {
        (r["cell"], r["bucket"].astimezone(UTC)): (
            r["n25"], r["s25"], r["lo25"], r["hi25"], r["n10"], r["s10"]
        )
        for r in rows
    }  # fmt: skip
    want = {
        key: (len(pm25), sum(pm25), min(pm25), max(pm25), len(pm10), sum(pm10))
        for key, (pm25, pm10) in expected.items()
    }
    assert found == want


SEOUL = """{
  districts(province: "11") {
    code name
    airQuality { pm25 { value grade readings } pm10 { value grade readings } }
  }
}"""

SCOPED = """query($from: DateTime!, $to: DateTime!) {
  viewer { clientId scopes }
  sensorSeries(area: {district: "11140"}, metric: "pm2_5", from: $from, to: $to, bucket: HOUR) {
    bucket value { count mean min max stddev }
  }
  sensorHeatmap(area: {district: "11140"}, metric: "pm10", from: $from, to: $to, resolution: 9) {
    cell value { count mean }
  }
}"""


async def ask(base: str, query: str, token: str | None = None, **variables: object) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=base, timeout=30, headers=headers) as http:
        return await graphql(http, query, variables)


async def test_the_gateway_answers_as_the_single_process_hub(topology: Topology) -> None:
    """Open data and scoped fields through the gateway equal the single-process hub's, from
    either sensors replica; a token issued by one process is good on all of them."""
    hub = await ask(topology.hub, SEOUL)
    assert "errors" not in hub, hub
    jung = next(d for d in hub["data"]["districts"] if d["code"] == "11140")
    assert jung["airQuality"]["pm25"]["readings"] == N
    assert jung["airQuality"]["pm10"]["readings"] == N
    others = [d for d in hub["data"]["districts"] if d["code"] != "11140"]
    assert len(others) == 24 and all(d["airQuality"] is None for d in others)

    token = await Hub(topology.platform, topology.pool).token("sensors:read")
    now = datetime.now(UTC)
    window = {"from": (now - timedelta(hours=2)).isoformat(), "to": now.isoformat()}
    scoped = await ask(topology.hub, SCOPED, token, **window)
    assert "errors" not in scoped, scoped
    assert sum(p["value"]["count"] for p in scoped["data"]["sensorSeries"] if p["value"]) == N
    cells = scoped["data"]["sensorHeatmap"]
    assert len(cells) == len(JUNG_GU) and sum(c["value"]["count"] for c in cells) == N

    before = [await metrics_of(url) for url in topology.sensors]
    for _ in topology.sensors:  # round robin: each time the other replica answers sensors
        assert await ask(topology.gateway, SEOUL) == hub
        assert await ask(topology.gateway, SCOPED, token, **window) == scoped
    after = [await metrics_of(url) for url in topology.sensors]
    # Each replica answered its turn of both queries. At least: an operation the gateway
    # sends of its own meanwhile counts too (a CI run once saw 4 on each).
    assert all(b - a >= 2 for a, b in zip(before, after, strict=True))


async def metrics_of(url: str) -> float:
    async with httpx.AsyncClient(timeout=10) as http:
        return operations((await http.get(f"{url}/metrics")).text)
