"""Live subscriptions: 10,000 subscribers on one hub process, fed by real ingest.

    .venv/bin/python bench/subscriptions.py [--subscribers 10000] [--client-processes 4]
        [--vehicles 5] [--seconds 20] [--warmup 5] [--district-share 0.1] [--tokens N]
        [--idle 5] [--compression deflate|none]

Starts `ieum serve` as one process (IEUM_WORKERS=1, no in-process ingest) on a database of
its own, and the embedded broker (or IEUM_DATABASE_URL / IEUM_KAFKA_BOOTSTRAP). Subscribers
connect from several client processes (the `websockets` client, one WebSocket each, the
graphql-transport-ws protocol, a bearer token in connection_init as apps send it: one
client-credentials token of its own per subscriber unless `--tokens` says fewer, from the
hub's token endpoint; one OAuth app per client process, its subscription limit raised for
the run) and subscribe to `liveReadings` with one to three metrics:

- most watch their neighbourhood, the res-8 H3 cell around a point near one of the roads
  the simulated fleet drives and its six neighbours (49 resolution-9 cells, ~5 km²): an
  app showing fine dust around its user;
- a share (`--district-share`) watch a whole Seoul district: a city dashboard.

Then a feeder process plays the fleet (`ieum simulate`'s taxis, each reporting once a
second at its own phase) into the telemetry topic and runs one ingest worker on it, which
commits the readings and sends them to the live topic the hub follows. The worker's
`on_commit` notes when each reading was committed, on the machine's monotonic clock, which
the client processes read too: latency is from that commit to a client's receipt of the
message (p50/p95/p99, readings produced after the warm-up), and from the device's own
timestamp as a second figure. Every subscriber whose area holds a reading's cell must get
it: received ÷ expected is printed, and any error or closed socket.

Memory per subscriber: the hub's RSS after connecting and subscribing, less its RSS before,
divided by the subscribers; again after the events flowed (queues, buffers). CPU: the
hub's with quiet subscribers (token rechecks), then each process's while the events
flowed, per delivery (the hub's also less its quiet cost). Last line:
`subscriptions: subscribers=N p99_ms=X rss_per_subscriber_kb=Y`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import math
import multiprocessing
import random
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path

import aiohttp
import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from h3.api import basic_int as h3
from harness import CpuClock, _tree, fresh_database, hub, servers

from adapters.sandbox import taxi_fleet as simulate
from auth import clients
from hub.bootstrap import prepare_database
from hub.core import db, gc_tuning
from hub.core.settings import Settings
from hub.domains import installed
from resolvers.platform import districts
from resolvers.sensors.ingest import IngestWorker, ensure_topics
from resolvers.sensors.live_feed import decode, live_topic_for
from resolvers.sensors.message import H3_RESOLUTION, Reading
from resolvers.sensors.queries import cells_of_geometry

installed()  # the domains' settings sections, as `ieum` loads them

SUBSCRIPTION = """subscription Live($area: AreaInput!, $metrics: [String!]!) {
  liveReadings(area: $area, metrics: $metrics) { ts cell values { metric value } }
}"""
METRICS = ["pm2_5", "pm10", "noise_laeq", "temperature", "humidity"]
SEOUL = "11"  # province code
CONNECTING_AT_ONCE = 10  # per client process: a herd of 10,000 at once starves the hub
TOKEN_REQUESTS_AT_ONCE = 20
DRAINED_SECONDS = 2.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Subscriber:
    token: str
    area: dict[str, object]
    metrics: list[str]


def micros(ts: datetime) -> int:
    return (ts - EPOCH) // timedelta(microseconds=1)


# Who subscribes to what


def areas(
    count: int, district_share: float, seoul: Sequence[str], rng: random.Random
) -> list[dict[str, object]]:
    """Neighbourhoods near the roads the fleet drives (people live where taxis drive)
    and, for a share, whole districts."""
    roads = list(simulate.ROADS.values())
    out: list[dict[str, object]] = []
    for _ in range(count):
        if rng.random() < district_share:
            out.append({"district": rng.choice(seoul)})
            continue
        road = rng.choice(roads)
        i = rng.randrange(len(road) - 1)
        t = rng.random()
        lat = road[i][0] + (road[i + 1][0] - road[i][0]) * t + rng.gauss(0, 0.004)
        lng = road[i][1] + (road[i + 1][1] - road[i][1]) * t + rng.gauss(0, 0.005)
        home = h3.latlng_to_cell(lat, lng, 8)
        out.append({"cells": [h3.int_to_str(c) for c in h3.grid_disk(home, 1)]})
    return out


async def cells_of(
    pool: asyncpg.Pool, area: dict[str, object], known: dict[str, frozenset[int]]
) -> frozenset[int]:
    """The resolution-9 cells of an area, as the hub works them out."""
    code = area.get("district")
    if isinstance(code, str):
        if code not in known:
            boundary = await districts.boundary(pool, code)
            assert boundary is not None, code
            known[code] = cells_of_geometry(boundary)
        return known[code]
    given = area["cells"]
    assert isinstance(given, list)
    return frozenset(
        child for text in given for child in h3.cell_to_children(h3.str_to_int(text), H3_RESOLUTION)
    )


async def access_tokens(base: str, reader: clients.NewClient, count: int) -> list[str]:
    """`count` client-credentials tokens of the app, from the hub's token endpoint, as
    each of its users' phones would hold one of its own."""
    credentials = f"{reader.client_id}:{reader.client_secret or ''}".encode()
    headers = {"Authorization": "Basic " + base64.b64encode(credentials).decode()}
    gate = asyncio.Semaphore(TOKEN_REQUESTS_AT_ONCE)

    async def one(session: aiohttp.ClientSession) -> str:
        async with (
            gate,
            session.post(
                f"{base}/oauth/token", data={"grant_type": "client_credentials"}, headers=headers
            ) as answer,
        ):
            assert answer.status == 200, await answer.text()
            return str((await answer.json())["access_token"])

    async with aiohttp.ClientSession() as session:
        return list(await asyncio.gather(*(one(session) for _ in range(count))))


# The client processes


def _clients(pipe: Connection, url: str, subscribers: list[Subscriber], compression: str) -> None:
    asyncio.run(_subscribe_all(pipe, url, subscribers, compression))


async def _subscribe_all(
    pipe: Connection, url: str, subscribers: list[Subscriber], compression: str
) -> None:
    from websockets.asyncio.client import connect

    receipts: list[tuple[str, float, float]] = []  # (ts, monotonic, wall clock)
    problems: Counter[str] = Counter()
    subscribed = settled = 0
    all_settled = asyncio.Event()
    gate = asyncio.Semaphore(CONNECTING_AT_ONCE)
    stop = asyncio.Event()

    async def one(index: int, subscriber: Subscriber) -> None:
        nonlocal subscribed, settled
        try:
            async with gate:
                ws = await connect(
                    url,
                    subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                    compression="deflate" if compression == "deflate" else None,
                    max_size=None,
                    open_timeout=60,
                )
                init = {
                    "type": "connection_init",
                    "payload": {"Authorization": f"Bearer {subscriber.token}"},
                }
                await ws.send(orjson.dumps(init).decode())
                ack = orjson.loads(await ws.recv())
                if ack.get("type") != "connection_ack":
                    problems[f"no ack: {ack}"[:120]] += 1
                    await ws.close()
                    return
                payload = {
                    "query": SUBSCRIPTION,
                    "variables": {"area": subscriber.area, "metrics": subscriber.metrics},
                }
                await ws.send(
                    orjson.dumps({"id": "1", "type": "subscribe", "payload": payload}).decode()
                )
                subscribed += 1
        except Exception as exc:
            problems[f"connect: {exc!r}"[:120]] += 1
            return
        finally:
            settled += 1
            if settled == len(subscribers):
                all_settled.set()
        try:
            async for message in ws:
                received, wall = time.monotonic(), time.time()
                event = orjson.loads(message)
                kind = event.get("type")
                if kind == "next":
                    data = event["payload"].get("data")
                    if data is None or event["payload"].get("errors"):
                        problems[f"next with errors: {event['payload']}"[:160]] += 1
                        continue
                    receipts.append((data["liveReadings"]["ts"], received, wall))
                elif kind == "ping":
                    await ws.send('{"type":"pong"}')
                elif kind in ("error", "complete"):
                    problems[f"{kind}: {event.get('payload')}"[:160]] += 1
                    break
        except Exception as exc:
            if not stop.is_set():
                problems[f"closed: {exc!r}"[:120]] += 1
        finally:
            if not stop.is_set():
                await ws.close()
            else:
                ws.transport.abort()

    began = time.monotonic()
    tasks = [asyncio.create_task(one(i, s)) for i, s in enumerate(subscribers)]
    await all_settled.wait()
    pipe.send(("subscribed", subscribed, time.monotonic() - began, dict(problems)))
    while await asyncio.to_thread(pipe.recv) == "count":
        pipe.send(len(receipts))
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    pipe.send((receipts, dict(problems)))


# The feeder: devices and one ingest worker


def _feeder(
    pipe: Connection, url: str, bootstrap: str, topic: str, vehicles: int, seconds: float
) -> None:
    asyncio.run(_feed(pipe, url, bootstrap, topic, vehicles, seconds))


async def _feed(
    pipe: Connection, url: str, bootstrap: str, topic: str, vehicles: int, seconds: float
) -> None:
    """Each vehicle reports once a second at its own phase, its reading's ts the wall
    clock when sent (to 10 ms), made unique by the vehicle's number in microseconds."""
    settings = Settings.from_env(log_level="warning")
    committed: dict[int, tuple[float, int]] = {}  # ts µs → (monotonic commit time, cell)
    sent = 0
    all_sent, all_committed = False, asyncio.Event()

    async def on_commit(readings: Sequence[Reading]) -> None:
        now = time.monotonic()
        for r in readings:
            committed[micros(r.ts)] = (now, r.cell)
        if all_sent and len(committed) >= sent:
            all_committed.set()

    gc_tuning.settle_after_startup()
    worker = IngestWorker(
        settings, url, bootstrap, group_id=f"bench-{topic}", topic=topic, on_commit=on_commit
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1)
    await producer.start()
    fleet = simulate.fleet(vehicles)
    rng = random.Random(11)
    phases = sorted((rng.random(), i) for i in range(vehicles))
    began, began_wall = time.monotonic(), time.time()
    tick = 0
    while (elapsed := time.monotonic() - began) < seconds:
        for phase, i in phases:
            due = tick + phase
            if due > elapsed:
                await asyncio.sleep(due - elapsed)
                elapsed = time.monotonic() - began
            clock = time.time()
            now = datetime.fromtimestamp(clock - clock % 0.01, UTC) + timedelta(microseconds=i)
            ((key, value),) = simulate.messages([fleet[i]], now, 1.0, 0.0, rng)
            body = orjson.loads(value)
            body["ts"] = now.isoformat(timespec="microseconds")
            await producer.send(topic, value=orjson.dumps(body), key=key)
            sent += 1
        tick += 1
    await producer.flush()
    await producer.stop()
    all_sent = True
    if len(committed) >= sent:
        all_committed.set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_committed.wait(), 30)
    stop.set()
    await task
    pipe.send((began_wall, sent, committed))


async def follow_feed(bootstrap: str, topic: str, seen: dict[int, float]) -> None:
    """When each reading reaches a consumer of the live topic that follows it as a hub
    does: the broker's share of the latency."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50
    )
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_end(partition)
        while True:
            batch = await consumer.getmany(timeout_ms=1000)
            now = time.monotonic()
            for records in batch.values():
                for record in records:
                    for reading in decode(record.value or b""):
                        seen[micros(reading.ts)] = now
    finally:
        await consumer.stop()


async def drained(pipes: list[Connection]) -> None:
    """Until the clients' receipts stop growing for DRAINED_SECONDS (or a minute): late
    deliveries count, with their latency, rather than as lost."""
    last, still_since, deadline = -1, time.monotonic(), time.monotonic() + 60
    while time.monotonic() < deadline:
        for parent in pipes:
            parent.send("count")
        total = sum([await asyncio.to_thread(parent.recv) for parent in pipes])
        if total != last:
            last, still_since = total, time.monotonic()
        elif time.monotonic() - still_since >= DRAINED_SECONDS:
            return
        await asyncio.sleep(0.25)


def hub_log_summary(path: str) -> None:
    """The hub's warnings and errors, counted by their text without the time."""
    lines = Path(path).read_text(errors="replace").splitlines()
    Path(path).unlink()
    found = Counter(
        line[24:].split(" error=")[0][:150]
        for line in lines
        if " WARNING " in line or " ERROR " in line
    )
    for text, count in found.most_common(4):
        print(f"  hub log x{count}: {text}")


# The hub's memory


def rss_kb(root: int) -> int:
    """Resident memory of the hub's processes (VmRSS), in kB."""
    total = 0
    for pid in _tree(root):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def waited_for_cpu(pid: int) -> float:
    """Seconds the process's main thread spent runnable but not running (schedstat)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100)[p - 1] if len(values) > 1 else values[0]


async def run(args: argparse.Namespace) -> None:
    settings = Settings.from_env(ingest=False, log_level="warning")
    spawn = multiprocessing.get_context("spawn")
    with servers(settings) as (server_url, bootstrap):
        async with fresh_database(server_url, "subscriptions") as url:
            await prepare_database(url, settings)
            pool = await db.create_pool(url, settings)
            owner = await clients.create(pool, name="bench fleet", scope_names="sensors:ingest")
            await simulate.register(pool, owner.client_id, simulate.fleet(args.vehicles))
            readers = [
                await clients.create(pool, name=f"bench app {i}", scope_names="sensors:read")
                for i in range(args.client_processes)
            ]
            seoul = [row.code for row in await districts.list_districts(pool, SEOUL)]
            rng = random.Random(5)
            wanted = areas(args.subscribers, args.district_share, seoul, rng)
            known: dict[str, frozenset[int]] = {}
            watching: Counter[int] = Counter()  # subscribers per resolution-9 cell
            for area in wanted:
                watching.update(await cells_of(pool, area, known))
            await pool.close()

            topic = f"bench.telemetry.{uuid.uuid4().hex[:8]}"
            await ensure_topics(bootstrap, 4, topic)
            per_client = math.ceil(args.subscribers / args.client_processes)
            env = {
                "IEUM_WORKERS": "1",
                "IEUM_TELEMETRY_TOPIC": topic,
                # An app's limit (20 by default) counts its subscriptions in one process:
                # each client process stands for many users of one app.
                "IEUM_MAX_SUBSCRIPTIONS_PER_CLIENT": str(per_client),
            }
            log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (read after the hub stopped)
                prefix="ieum-subscriptions-hub-", suffix=".log", delete=False
            )
            with log, hub(url, bootstrap, {}, env, log) as (base, hub_pid):
                ws_url = base.replace("http://", "ws://") + "/graphql"
                began = time.monotonic()
                each = math.ceil(args.tokens / args.client_processes)
                tokens = [await access_tokens(base, reader, each) for reader in readers]
                print(
                    f"{sum(map(len, tokens)):,} access tokens (client credentials, one app per "
                    f"client process) in {time.monotonic() - began:.1f} s"
                )
                rss_before = rss_kb(hub_pid)
                shares: list[list[Subscriber]] = [[] for _ in range(args.client_processes)]
                for n, area in enumerate(wanted):
                    k = n % args.client_processes
                    metrics = rng.sample(METRICS, rng.randint(1, 3))
                    token = tokens[k][n // args.client_processes % len(tokens[k])]
                    shares[k].append(Subscriber(token, area, metrics))
                pipes, processes = [], []
                for share in shares:
                    parent, child = multiprocessing.Pipe()
                    process = spawn.Process(
                        target=_clients, args=(child, ws_url, share, args.compression), daemon=True
                    )
                    process.start()
                    pipes.append(parent)
                    processes.append(process)
                subscribed, setup_problems = 0, Counter[str]()
                slowest = 0.0
                for parent in pipes:
                    _, count, seconds, problems = await asyncio.to_thread(parent.recv)
                    subscribed += count
                    slowest = max(slowest, seconds)
                    setup_problems.update(problems)
                await asyncio.sleep(3)  # the last subscribe messages are executed
                rss_subscribed = rss_kb(hub_pid)
                idle = await CpuClock.start(url, {"hub": hub_pid})
                await asyncio.sleep(args.idle)
                idle_cpu = (await idle.stop()).get("hub", 0.0)
                print(
                    f"{subscribed:,} of {args.subscribers:,} subscribed in {slowest:.1f} s over "
                    f"{args.client_processes} client processes "
                    f"({sum(1 for a in wanted if 'district' in a)} watch a district), "
                    f"compression {args.compression}"
                )
                for problem, count in setup_problems.most_common(5):
                    print(f"  setup problem x{count}: {problem}")

                roots = {
                    "hub": hub_pid,
                    **{f"clients {i}": p.pid or 0 for i, p in enumerate(processes)},
                }
                feeder_pipe, feeder_child = multiprocessing.Pipe()
                feeder = spawn.Process(
                    target=_feeder,
                    args=(
                        feeder_child,
                        url,
                        bootstrap,
                        topic,
                        args.vehicles,
                        args.warmup + args.seconds,
                    ),
                    daemon=True,
                )
                feeder.start()
                roots["feeder (devices + ingest)"] = feeder.pid or 0
                seen: dict[int, float] = {}
                clock = await CpuClock.start(url, roots)
                cpu_began = time.time()
                hub_waited = waited_for_cpu(hub_pid)
                probe = asyncio.create_task(follow_feed(bootstrap, live_topic_for(topic), seen))
                feed_began, sent, committed = await asyncio.to_thread(feeder_pipe.recv)
                await drained(pipes)
                cpu = await clock.stop()
                hub_waited = waited_for_cpu(hub_pid) - hub_waited
                probe.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await probe
                feed_seconds = time.time() - cpu_began
                rss_after = rss_kb(hub_pid)
                feeder.join(30)

                receipts: list[tuple[str, float, float]] = []
                problems_after: Counter[str] = Counter()
                for parent in pipes:
                    parent.send("stop")
                for parent in pipes:
                    got, problems = await asyncio.to_thread(parent.recv)
                    receipts.extend(got)
                    problems_after.update(problems)
                for process in processes:
                    process.join(30)

    measured_from = feed_began + args.warmup
    counted = {
        ts: entry
        for ts, entry in committed.items()
        if ts / 1e6 >= measured_from  # produced after the warm-up
    }
    expected = sum(watching[cell] for _, cell in counted.values())
    to_feed = [seen[ts] - commit for ts, (commit, _) in counted.items() if ts in seen]
    from_commit: list[float] = []
    from_device: list[float] = []
    for ts_text, received, wall in receipts:
        ts = micros(datetime.fromisoformat(ts_text))
        entry = counted.get(ts)
        if entry is None:
            continue
        from_commit.append(received - entry[0])
        from_device.append(wall - ts / 1e6)
    deliveries = len(from_commit)
    print(
        f"{args.vehicles} vehicles once a second: {sent:,} readings sent, {len(committed):,} "
        f"committed; {len(counted):,} after the {args.warmup:.0f} s warm-up, "
        f"{expected / max(len(counted), 1):.0f} subscribers each on average"
    )
    print(
        f"deliveries: {deliveries:,} received of {expected:,} expected "
        f"({deliveries / max(expected, 1):.3%}), {deliveries / args.seconds:,.0f}/s"
    )
    for problem, count in problems_after.most_common(5):
        print(f"  problem x{count}: {problem}")
    if from_commit:
        for name, values in (
            ("ingest commit -> client", from_commit),
            ("device ts -> client", from_device),
            ("ingest commit -> live topic", to_feed),
        ):
            print(
                f"  {name:26} p50 {percentile(values, 50) * 1000:7.1f} ms"
                f"   p95 {percentile(values, 95) * 1000:7.1f} ms"
                f"   p99 {percentile(values, 99) * 1000:7.1f} ms"
                f"   max {max(values) * 1000:7.1f} ms"
            )
    per_subscriber = (rss_subscribed - rss_before) / max(subscribed, 1)
    print(
        f"hub RSS: {rss_before / 1024:.0f} MB before, {rss_subscribed / 1024:.0f} MB subscribed "
        f"({per_subscriber:.1f} kB a subscriber), {rss_after / 1024:.0f} MB after the events "
        f"({(rss_after - rss_before) / max(subscribed, 1):.1f} kB a subscriber)"
    )
    print(
        f"hub CPU with {subscribed:,} quiet subscribers: {idle_cpu / args.idle:.0%} of a core "
        f"({idle_cpu / args.idle / max(subscribed, 1) * 1e6:.1f} µs a second each: token "
        "rechecks, timers)"
    )
    hub_log_summary(log.name)
    total_deliveries = len(receipts)
    print(f"CPU over {feed_seconds:.0f} s of feeding ({total_deliveries:,} deliveries in all):")
    for group, seconds in sorted(cpu.items()):
        per = (
            f"   {seconds / total_deliveries * 1e6:6.1f} µs a delivery" if total_deliveries else ""
        )
        print(f"  {group:28} {seconds:6.1f} s ({seconds / feed_seconds:4.0%} of a core){per}")
    if total_deliveries and "hub" in cpu:
        net = cpu["hub"] - idle_cpu / args.idle * feed_seconds
        print(f"  hub, less its quiet cost: {net / total_deliveries * 1e6:.1f} µs a delivery")
    print(
        f"  the hub waited for a CPU, ready to run, {hub_waited / feed_seconds:.0%} of the time"
        " (other processes on the machine: latency above is then theirs, not the hub's)"
    )
    p99 = percentile(from_commit, 99) * 1000 if from_commit else float("nan")
    print(
        f"subscriptions: subscribers={subscribed} p99_ms={p99:.0f} "
        f"rss_per_subscriber_kb={per_subscriber:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--client-processes", type=int, default=4)
    parser.add_argument(
        "--vehicles", type=int, default=5, help="reporting once a second (at most 10,000)"
    )
    parser.add_argument("--seconds", type=float, default=20, help="measured, after the warm-up")
    parser.add_argument("--warmup", type=float, default=5, help="the ingest worker joins")
    parser.add_argument("--district-share", type=float, default=0.1)
    parser.add_argument(
        "--tokens",
        type=int,
        default=None,
        help="distinct access tokens (default: one a subscriber, as each user's phone)",
    )
    parser.add_argument(
        "--idle", type=float, default=5, help="seconds of the hub's CPU with no events"
    )
    parser.add_argument(
        "--compression",
        choices=("deflate", "none"),
        default="deflate",
        help="permessage-deflate offered by the clients, as browsers do",
    )
    args = parser.parse_args()
    args.tokens = min(args.tokens or args.subscribers, args.subscribers)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
