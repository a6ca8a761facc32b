"""Notices fan-out: one fine-dust warning to 100,000 opted-in citizens across 10 apps.

The hub's delivery worker (this process: the same `Deliverer` `ieum worker notices` runs)
sends every delivery to its app's webhook receiver, signed; the receivers (10 apps on one
loopback server in a process of their own, so they do not share this one's CPU) check
each signature as an app would, drop repeats by webhook-id and, with --fail-share, answer
503 to that share of requests. Prints deliveries per second, the time until the last
delivery, the time to accept the notice (fan-out), peak memory of the worker and the
receivers, and checks that every delivery arrived once (at least once, distinct ids).

The worker runs at the hub's defaults (IEUM_NOTICES_BATCH, _LANES, _APP_CONCURRENCY, and
the apps register without maxBatch: IEUM_NOTICES_DEFAULT_MAX_BATCH) unless told otherwise;
`--max-batch 1` is one notice per request. Where the time goes: the worker's CPU per
delivery, and the mean wall time of its steps (claim, audit, one webhook request, settle).

    .venv/bin/python bench/notices.py [--citizens 100000] [--apps 10] [--fail-share 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import random
import resource
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import fresh_database, servers  # noqa: E402
from hub.bootstrap import prepare_database  # noqa: E402
from hub.core import db  # noqa: E402
from hub.core.settings import Settings  # noqa: E402
from hub.embedded.ports import free_port  # noqa: E402
from resolvers.notices import delivery, queue, signing, store, webhooks  # noqa: E402
from resolvers.notices.settings import NoticesSettings  # noqa: E402

DEFAULTS = NoticesSettings()
DISTRICT = "11110"
WARNING = {"district": "종로구", "pm25": 82}


# The receivers' process: one loopback server, one path per app.


def serve_receivers(port: int, secrets: list[str], fail_share: float) -> None:
    """Run until killed: /app/<n> checks and takes deliveries, /stats tells the counts."""
    import uvicorn

    keys = [signing.key_of(secret) for secret in secrets]
    seen: list[set[str]] = [set() for _ in keys]
    counts = {"requests": 0, "refused": 0, "failed": 0, "repeats": 0}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        path = scope["path"]
        if path == "/stats":
            stats = {**counts, "received": [len(s) for s in seen], "maxrss_kb": _maxrss()}
            await _answer(send, 200, json.dumps(stats).encode())
            return
        counts["requests"] += 1
        index = int(path.rsplit("/", 1)[1])
        if random.random() < fail_share:
            counts["failed"] += 1
            await _answer(send, 503, b"unavailable")
            return
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        event_id, stamp = headers["webhook-id"], headers["webhook-timestamp"]
        signed = f"{event_id}.{stamp}.".encode() + body
        expected = (
            "v1,"
            + base64.b64encode(hmac.new(keys[index], signed, hashlib.sha256).digest()).decode()
        )
        if (
            expected not in headers["webhook-signature"].split()
            or abs(time.time() - int(stamp)) > 300
        ):
            counts["refused"] += 1
            await _answer(send, 400, b"bad signature")
            return
        event = json.loads(body)
        ids = (
            [n["eventId"] for n in event["data"]["notices"]]
            if event["type"] == "notice.batch"
            else [event_id]
        )
        for one in ids:
            if one in seen[index]:
                counts["repeats"] += 1
            seen[index].add(one)
        await _answer(send, 200, b"ok")

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def _answer(send: Any, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# The run


async def run(args: argparse.Namespace) -> None:
    settings = Settings.from_env()
    with servers(settings) as (server_url, _):
        async with fresh_database(server_url, "notices") as url:
            await prepare_database(url, settings)
            pool = await db.create_pool(url, Settings.from_env(db_pool_max=args.lanes + 4))
            try:
                await _bench(args, pool)
            finally:
                await pool.close()


async def _bench(args: argparse.Namespace, pool: asyncpg.Pool) -> None:
    port = free_port()
    apps = [f"bench-app-{n}" for n in range(args.apps)]
    secrets: list[str] = []
    for n, app in enumerate(apps):
        url = f"http://127.0.0.1:{port}/app/{n}"
        hook = await webhooks.register(
            pool,
            app,
            url,
            key=app,
            max_batch=args.max_batch,
            default_max_batch=DEFAULTS.default_max_batch,
        )
        secrets.append(signing.shown(hook.secret))
    receivers = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--serve-receivers",
        str(port),
        "--fail-share",
        str(args.fail_share),
        env={**os.environ, "BENCH_SECRETS": " ".join(secrets)},
    )
    try:
        await _wait_for(port)
        async with pool.acquire() as conn, conn.transaction():  # setup: no 10 s limit
            await conn.execute("SELECT set_config('statement_timeout', '0', true)")
            await conn.execute(
                "INSERT INTO notice_choices (user_id, client_id, type_code, district_code)"
                " SELECT gen_random_uuid(), 'bench-app-' || (n % $2), 'fine_dust_warning', $3"
                " FROM generate_series(1, $1) AS n",
                args.citizens,
                args.apps,
                DISTRICT,
                timeout=600,
            )
        section = NoticesSettings(
            batch=args.batch,
            lanes=args.lanes,
            app_concurrency=args.app_concurrency,
            first_retry_seconds=args.retry_seconds,
            longest_retry_seconds=args.retry_seconds * 4,
        )
        steps = _timed_steps()
        started = time.perf_counter()
        accepted = await store.publish(
            pool,
            store.NewNotice.from_event(
                "sensors",
                uuid.uuid4().hex,
                type_code="fine_dust_warning",
                district_code=DISTRICT,
                params=WARNING,
            ),
            store.QuietHours(0, 24),
        )
        fanned = time.perf_counter() - started
        assert accepted.notice.recipients == args.citizens, accepted.notice.recipients
        cpu = time.process_time()
        deliverer = delivery.Deliverer(pool, section)
        try:
            stop = asyncio.Event()
            lanes = [asyncio.create_task(_lane(deliverer, stop)) for _ in range(args.lanes)]
            sent_at = time.perf_counter()
            await _all_settled(pool)
            last = time.perf_counter()
            stop.set()
            await asyncio.gather(*lanes)
        finally:
            await deliverer.aclose()
        cpu = time.process_time() - cpu
        async with httpx.AsyncClient() as client:
            stats = (await client.get(f"http://127.0.0.1:{port}/stats")).json()
        statuses = dict(
            await pool.fetch("SELECT status, count(*) FROM notice_deliveries GROUP BY status")
        )
        _report(args, hook.max_batch, fanned, last - sent_at, cpu, stats, statuses)
        print(
            "mean wall time per step: "
            + ", ".join(
                f"{name} {total / n * 1000:.1f} ms ({n:,})" for name, (n, total) in steps.items()
            )
        )
    finally:
        receivers.terminate()
        await receivers.wait()


async def _all_settled(pool: asyncpg.Pool) -> None:
    while True:
        pending = await pool.fetchval(
            "SELECT count(*) FROM notice_deliveries WHERE status = 'pending'"
        )
        if not pending:
            return
        await asyncio.sleep(0.2)


def _timed_steps() -> dict[str, tuple[int, float]]:
    """Wrap the worker's steps to add up their calls and wall time (awaits overlap across
    lanes and apps: a step's mean is its latency, not its cost)."""
    found: dict[str, tuple[int, float]] = defaultdict(lambda: (0, 0.0))

    def wrap(owner: Any, name: str, label: str) -> None:
        original: Callable[..., Awaitable[Any]] = getattr(owner, name)

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                n, total = found[label]
                found[label] = (n + 1, total + time.perf_counter() - started)

        setattr(owner, name, timed)

    wrap(queue, "claim", "claim (SQL)")
    wrap(delivery, "_audited", "audit (SQL)")
    wrap(delivery.Deliverer, "_send", "webhook request")
    wrap(queue, "settle", "settle (SQL)")
    return found


def _report(
    args: argparse.Namespace,
    per_request: int,
    fanned: float,
    took: float,
    cpu: float,
    stats: dict[str, Any],
    statuses: dict[str, int],
) -> None:
    received = sum(stats["received"])
    print(
        f"citizens {args.citizens:,} across {args.apps} apps, up to {per_request} notice(s) per"
        f" request; receivers failing {args.fail_share:.0%} of requests; claims of"
        f" {args.batch}, {args.lanes} lanes, {args.app_concurrency} requests in flight per app"
    )
    print(f"fan-out (accept the notice and make its deliveries): {fanned:.2f} s")
    print(f"deliveries/s: {args.citizens / took:,.0f} (time until the last delivery {took:.1f} s)")
    print(
        f"webhook requests: {stats['requests']:,} (answered 503: {stats['failed']:,},"
        f" refused: {stats['refused']})"
    )
    print(
        f"worker CPU: {cpu:.1f} s ({cpu / took:.0%} of one core,"
        f" {cpu / args.citizens * 1000:.2f} ms per delivery); peak RSS: worker"
        f" {_maxrss() / 1024:.0f} MB, receivers {stats['maxrss_kb'] / 1024:.0f} MB"
    )
    print(
        f"received: {received:,} distinct event ids (repeats {stats['repeats']});"
        f" deliveries {statuses}"
    )
    lost = args.citizens - received
    print(
        "nothing lost" if lost == 0 and statuses == {"delivered": args.citizens} else f"LOST {lost}"
    )


async def _lane(deliverer: delivery.Deliverer, stop: asyncio.Event) -> None:
    while not stop.is_set():
        if await deliverer.round() < deliverer.section.batch:
            await asyncio.sleep(0.05)


async def _wait_for(port: int) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            try:
                await client.get(f"http://127.0.0.1:{port}/stats")
                return
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    raise RuntimeError("the receivers did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--citizens", type=int, default=100_000)
    parser.add_argument("--apps", type=int, default=10)
    parser.add_argument("--fail-share", type=float, default=0.0)
    parser.add_argument("--batch", type=int, default=DEFAULTS.batch, help="deliveries per claim")
    parser.add_argument(
        "--max-batch", type=int, help="notices per webhook request (the hub's default)"
    )
    parser.add_argument("--lanes", type=int, default=DEFAULTS.lanes)
    parser.add_argument("--app-concurrency", type=int, default=DEFAULTS.app_concurrency)
    parser.add_argument("--retry-seconds", type=float, default=0.5, help="first retry wait")
    parser.add_argument("--serve-receivers", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_receivers:
        serve_receivers(args.serve_receivers, os.environ["BENCH_SECRETS"].split(), args.fail_share)
        return
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
