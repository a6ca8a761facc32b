"""Journeys and train bookings end to end: apps planning door-to-door journeys between
random addresses, and citizens booking the last seats of a few trains, with every
upstream answering after a fixed latency.

    .venv/bin/python bench/journeys.py [--clients 20] [--latency-ms 30] [--seconds 20]
        [--solo-seconds 6] [--light-rate 5] [--light-seconds 10] [--cached-seconds 12]
        [--bookings 240] [--seats 60] [--workers 1] [--concurrency 256] [--pool 20]

Starts embedded PostgreSQL and broker (or uses IEUM_DATABASE_URL / IEUM_KAFKA_BOOTSTRAP)
with a fresh database, dropped at the end; the timetable (tago), operator (railbooking),
local route (odsay), tax system and card gateway sandboxes in one process of their own,
each answering its calls after `--latency-ms` (its fault injector) and noting when each
call began and ended (30 ms by default: a quick upstream nearby; a public API across the
internet is usually slower, and a longer latency would only hide more of the hub's own
time behind the waits, not change it); and the hub as production runs it, `ieum serve
--no-demo` with IEUM_WORKERS processes and its workers inside, its adapters pointed at
the sandboxes and allowed `--concurrency` calls in flight each, so the bench measures
the hub and not an adapter's queue. The load client is the lean keep-alive one of
bench/harness.py: it shares the hub's cores.

1. Overhead run: the hub with its mobility caches off, so every search makes both upstream
   rounds of its critical path: local paths to and from the stations near both ends and
   the trains between them, concurrently (one latency), then seats for the best trains
   (a second). Apps search back to back between random points around two cities of one
   rail corridor, leaving at a random hour tomorrow: first one app alone (no queueing),
   then `--light-rate` searches a second started at random moments (an open loop: a load
   the two cores are not saturated by), then `--clients` at once. Overhead = end to end -
   2 x latency: the hub's own work, and also the sandboxes' handling of the slowest call of
   each round (each call's time at its sandbox is printed) and the loopback HTTP: an upper
   bound. With one app alone each call is told to its search, and the overhead is also
   measured as the issue defines it: end to end less the slowest call (latency and
   handling) of each round, split into the hub's work outside the rounds and the rounds'
   stagger (calls sent or read one after another); the slowest searches are taken apart.
   With 20 closed-loop clients on two cores shared with the sandboxes, the overhead is
   mostly queueing: compare the CPU per answer. Nothing is sold before the bookings part
   and the sandbox pre-sells at most 60 % of a class, so no train is sold out and no
   search needs a third round for seats (the operator's calls per answer are printed: one
   seats query for the first window's 7 trains; the rounds of each search alone too). A search whose
   nearest stations make no itinerary (서울 → 안동: those trains leave from 청량리; 천안
   → 목포 late in the afternoon; about one in 150 here) asks about more stations in a
   round of its own, counted in its overhead (and in its round 1 when taken apart). A
   search is
   complete with itineraries and nothing missing; the rate counts complete ones, since an
   answer made quick by an upstream's open breaker is of no use.
2. The same searches with the hub's default caches (timetables 10 min, local paths 5 min,
   seats 5 s), on a hub started afresh: what an app sees as the caches fill.
3. Bookings, on a hub started afresh: `--clients` citizens who consented on the consent page
   (authorization code + PKCE) to one app, contending for three trains of tomorrow with
   `--seats` general seats left each, loop holdSeats → the card at the gateway → payBooking
   until `--bookings` attempts are made. Then the operator's reservations, the hub's
   bookings and the payments are checked against each other: no seat sold twice, every
   ticketed booking with exactly one ticket and one charge, the counts equal.

Printed: latency percentiles, the CPU each part spent per request (hub processes,
PostgreSQL, sandboxes, load client; from /proc), upstream calls per search, what the hub
logged as errors. The last line sums up the overhead run with `--clients` and the
bookings; the exit status is 1 when a booking was doubled or refused other than SOLD_OUT,
or a search's answer was not complete.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import html
import math
import random
import re
import secrets
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import orjson
from harness import (
    CALL_LOG_PATH,
    Connections,
    CpuClock,
    fresh_database,
    hub,
    quantiles,
    sandboxes,
    servers,
)

from adapters import registry
from adapters.tosspayments import sandbox as gateway_sandbox
from auth import clients
from auth.identity import LocalAccounts
from hub.bootstrap import prepare_database
from hub.core.settings import Settings
from hub.domains import installed
from schema.payments.upstreams import WEBHOOK_PATH

installed()  # the domains' settings sections and scopes, as `ieum` loads them

KST = ZoneInfo("Asia/Seoul")
SANDBOXES = ("tago", "railbooking", "odsay", "localtax", "tosspayments")
JOURNEY_UPSTREAMS = ("tago", "odsay", "railbooking")
CACHES = ("TIMETABLE", "ROUTES", "SEATS")  # IEUM_MOBILITY_<…>_CACHE_SECONDS
ANSWER_SECONDS = 30  # a hung request fails the run instead of stalling it
SCATTER_KM = 3.0  # addresses are random points this far around a city's centre
REDIRECT = "http://127.0.0.1:9999/callback"  # the app's; the bench reads the code off it
PASSWORD = "bench citizen password"  # noqa: S105  # the bench's own throwaway accounts

# City centres (WGS84) and the rail corridors joining them: any two cities of a corridor
# have direct trains between stations near them in the sandbox's network.
CITIES = {
    "서울": (37.5665, 126.9780),
    "수원": (37.2636, 127.0286),
    "천안": (36.8151, 127.1139),
    "대전": (36.3504, 127.3845),
    "대구": (35.8714, 128.6014),
    "경주": (35.8562, 129.2247),
    "울산": (35.5384, 129.3114),
    "부산": (35.1796, 129.0756),
    "포항": (36.0190, 129.3435),
    "창원": (35.2280, 128.6811),
    "진주": (35.1800, 128.1076),
    "익산": (35.9483, 126.9577),
    "광주": (35.1595, 126.8526),
    "목포": (34.8118, 126.3922),
    "전주": (35.8242, 127.1480),
    "순천": (34.9506, 127.4872),
    "여수": (34.7604, 127.6622),
    "원주": (37.3422, 127.9202),
    "강릉": (37.7519, 128.8761),
    "안동": (36.5684, 128.7294),
}
CORRIDORS = (
    ("서울", "수원", "천안", "대전", "대구", "경주", "울산", "부산"),  # 경부
    ("서울", "대전", "대구", "포항"),
    ("서울", "대전", "대구", "창원", "진주"),  # 경전
    ("서울", "천안", "익산", "광주", "목포"),  # 호남
    ("서울", "익산", "전주", "순천", "여수"),  # 전라
    ("서울", "원주", "강릉"),
    ("서울", "원주", "안동"),
)
PAIRS = sorted({(a, b) for line in CORRIDORS for a in line for b in line if a != b})

JOURNEYS = """query($from: PlaceInput!, $to: PlaceInput!, $after: DateTime) {
  journeys(from: $from, to: $to, departAfter: $after) {
    itineraries {
      leaveAt arriveAt minutes fare transfers walkMeters estimated
      access { minutes fare rides }
      train {
        trainNo grade runDate departsAt arrivesAt adultFare
        from { code name } to { code name }
        seats { generalLeft specialLeft generalFare specialFare }
      }
      egress { minutes fare rides }
    }
    missing { upstream part reason kind }
  }
}"""
BOOKING = "id status trainNo runDate seats { car seat } amount orderId saleNo"
HOLD = f"""mutation($i: HoldSeatsInput!, $k: String!) {{
  holdSeats(input: $i, idempotencyKey: $k) {{ {BOOKING} }}
}}"""
PAY = f"""mutation($b: UUID!, $p: String!, $k: String!) {{
  payBooking(bookingId: $b, paymentKey: $p, idempotencyKey: $k) {{ {BOOKING} }}
}}"""


class Refused(Exception):
    """A GraphQL error the hub answered; `code` is its extensions.code."""

    def __init__(self, code: str, answer: dict[str, Any]) -> None:
        super().__init__(f"{code}: {answer}")
        self.code = code


async def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    latency = args.latency_ms / 1000
    uncached_env = {f"IEUM_MOBILITY_{name}_CACHE_SECONDS": "0" for name in CACHES}
    with (
        servers(settings) as (server_url, bootstrap),
        tempfile.TemporaryDirectory() as logs,
    ):
        async with fresh_database(server_url, "journeys") as url:
            await prepare_database(url, settings)
            with sandboxes(SANDBOXES, latency) as (urls, sandbox_pid):
                print_settings(args)
                world = World(args, url, urls, sandbox_pid)
                async with world.hub(bootstrap, uncached_env, Path(logs) / "uncached.log"):
                    print("\n1. journeys, mobility caches off (every search asks every upstream)")
                    solo = await world.journeys(1, args.solo_seconds)
                    solo.print(latency, "one client alone", overhead=True, solo=True)
                    light = await world.journeys(1, args.light_seconds, rate=args.light_rate)
                    light.print(
                        latency,
                        f"{args.light_rate:g} searches/s started at random moments (open loop,"
                        " a load the machine is not saturated by)",
                        overhead=True,
                    )
                    uncached = await world.journeys(args.clients, args.seconds)
                    uncached.print(latency, f"{args.clients} clients", overhead=True)
                async with world.hub(bootstrap, {}, Path(logs) / "cached.log"):
                    print("\n2. journeys, the hub's default caches")
                    cached = await world.journeys(args.clients, args.cached_seconds)
                    cached.print(latency, f"{args.clients} clients")
                # afresh: breakers the searches opened would refuse the bookings
                async with world.hub(bootstrap, {}, Path(logs) / "bookings.log"):
                    print("\n3. bookings (the hub's default caches)")
                    booked = await bookings(args, url, world.base, urls, world.pids)
                    offenders = await check_bookings(url, urls["railbooking"], booked)
    incomplete = {
        name: len(run.spans) - run.complete + run.errors
        for name, run in (
            ("alone", solo),
            ("paced", light),
            (f"{args.clients} clients", uncached),
            ("cached", cached),
        )
        if run.complete < len(run.spans) or run.errors
    }
    print(f"\njourney answers not complete: {incomplete or 'none'}")
    q = statistics.quantiles(uncached.overheads(latency), n=100)
    paced = statistics.quantiles(light.overheads(latency), n=100)
    print(
        f"journeys: per_s={uncached.rate:.0f} overhead_p50_ms={q[49] * 1000:.1f}"
        f" overhead_p99_ms={q[98] * 1000:.1f} paced_overhead_p50_ms={paced[49] * 1000:.1f}"
        f" paced_overhead_p99_ms={paced[98] * 1000:.1f} bookings_per_s={booked.rate:.1f}"
        f" double={len(offenders)}"
    )
    return 1 if offenders or incomplete or booked.errors else 0


def environment(args: argparse.Namespace) -> dict[str, str]:
    """The hub's settings besides its servers and the adapters' addresses."""
    env = {
        "IEUM_WORKERS": str(args.workers),
        "IEUM_DB_POOL_MAX": str(args.pool),
        "IEUM_MOBILITY_SANDBOX": "false",
        "IEUM_PAYMENTS_SANDBOX": "false",
    }
    for name in SANDBOXES:
        env[registry.get(name).env_prefix + "CONCURRENCY"] = str(args.concurrency)
    return env


def print_settings(args: argparse.Namespace) -> None:
    shown = " ".join(f"{k}={v}" for k, v in environment(args).items())
    print(
        f"{args.clients} clients; every sandbox answers after {args.latency_ms:g} ms"
        f" ({', '.join(SANDBOXES)}, one process); hub: {shown}"
    )


# Journeys


@dataclass
class World:
    """The run's database and sandboxes, and the hub of the moment."""

    args: argparse.Namespace
    url: str
    urls: dict[str, str]
    sandbox_pid: int
    base: str = ""
    pids: dict[str, int] = field(default_factory=dict)

    @contextlib.asynccontextmanager
    async def hub(self, bootstrap: str, env: dict[str, str], log: Path) -> AsyncIterator[None]:
        """A hub with `env` over the bench's settings; what it logged as errors after."""
        env = {**environment(self.args), **env}
        with log.open("wb") as written, hub(self.url, bootstrap, self.urls, env, written) as up:
            self.base, pid = up
            self.pids = {"hub": pid, "sandboxes": self.sandbox_pid}
            yield
        logged = errors_logged(log)
        print(f"  the hub logged {sum(logged.values())} errors")
        for message, count in logged.most_common(3):
            print(f"    {count} x {message}")

    async def journeys(self, clients: int, seconds: float, rate: float = 0.0) -> JourneyRun:
        """`clients` apps searching back to back, or with `rate`, searches started at
        random (Poisson) moments that many a second whether or not the earlier ones have
        been answered: a warm-up, then `seconds` measured."""
        token = await app_token(self.url, self.base, "mobility:plan")
        apps = [
            Connections(self.base, {"Authorization": f"Bearer {token}"}) for _ in range(clients)
        ]
        places = random.Random(self.args.seed)

        async def load(seconds: float, result: JourneyRun) -> None:
            if rate:
                await _paced(apps[0], places, rate, seconds, result)
            else:
                await _searching(apps, places, seconds, result)

        try:
            await load(self.args.warmup, JourneyRun())
            await calls_logged(self.urls)  # forgets the warm-up's
            clock = await CpuClock.start(self.url, self.pids)
            result = JourneyRun()
            started = time.monotonic()
            await load(seconds, result)
            result.elapsed = time.monotonic() - started
            result.cpu = await clock.stop()
            result.calls = await calls_logged(self.urls)
        finally:
            for app in apps:
                await app.close()
        return result


def errors_logged(log: Path) -> Counter[str]:
    """The ERROR lines of a hub's log by message, numbers left out."""
    return Counter(
        re.sub(r"[0-9]+", "#", line.split(" ERROR ", 1)[1].strip())[:100]
        for line in log.read_text(errors="replace").splitlines()
        if " ERROR " in line
    )


Span = tuple[float, float]  # (began, ended) on the machine's monotonic clock


@dataclass
class JourneyRun:
    spans: list[Span] = field(default_factory=list)  # each answered search's
    complete: int = 0  # answers with itineraries and nothing missing or left null
    elapsed: float = 0.0
    empty: int = 0  # answers without an itinerary
    missing: Counter[str] = field(default_factory=Counter)  # gaps by upstream and kind
    degraded: int = 0  # answers with a field left null (UPSTREAM_UNAVAILABLE)
    errors: int = 0  # answers without data
    calls: dict[str, list[Span]] = field(default_factory=dict)  # by upstream, as served
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def latencies(self) -> list[float]:
        return [ended - began for began, ended in self.spans]

    @property
    def rate(self) -> float:
        """Complete journeys a second: an empty answer (an upstream's breaker open) is
        quick and no use to anyone."""
        return self.complete / self.elapsed if self.elapsed else 0.0

    def overheads(self, latency: float) -> list[float]:
        """End to end less the two upstream rounds' latency, for every answered search: an
        upper bound of the hub's own time, as it also holds the sandboxes' handling of the
        slowest call of each round (queueing on the shared cores under load)."""
        return [seconds - 2 * latency for seconds in self.latencies]

    def anatomies(self, latency: float) -> list[Anatomy]:
        """Each search's upstream rounds as the sandboxes served them. One client at a
        time only: a call is taken for the search running while the sandbox served it.
        A call's time is its fixed latency (the fault injector waits before the call is
        noted) and its handling."""
        first = [
            (began - latency, ended)
            for name in ("tago", "odsay")
            for began, ended in self.calls[name]
        ]
        second = [(began - latency, ended) for began, ended in self.calls["railbooking"]]
        return [Anatomy(span, _within(first, *span), _within(second, *span)) for span in self.spans]

    def print(self, latency: float, who: str, overhead: bool = False, solo: bool = False) -> None:
        count = len(self.spans)
        print(
            f"  {who}: {count} answers in {self.elapsed:.1f} s, {self.complete} complete:"
            f" {self.rate:.1f} journeys/s; {self.empty} without an itinerary, {self.degraded}"
            f" with a field left null, {sum(self.missing.values())} gaps"
            f" {dict(self.missing) or ''}, {self.errors} without data"
        )
        if count < 2:
            return
        print(
            "  upstream calls per answer: "
            + ", ".join(f"{name} {len(calls) / count:.2f}" for name, calls in self.calls.items())
        )
        quantiles("end to end", self.latencies)
        if overhead:
            quantiles(f"hub overhead (e2e - 2 x {latency * 1000:g} ms)", self.overheads(latency))
        if solo:
            self.print_rounds(latency)
        for name, calls in self.calls.items():
            if len(calls) >= 2:
                quantiles(f"a {name} call at its sandbox", [e - b for b, e in calls])
        print_cpu("answer", self.cpu, count)

    def print_rounds(self, latency: float) -> None:
        """The hub's own time by the issue's measure, end to end less the slowest call of
        each round on the critical path, where it goes, and the slowest searches."""
        searches = self.anatomies(latency)
        quantiles("hub overhead (e2e - slowest call per round)", [a.overhead for a in searches])
        quantiles("  of which outside the upstream rounds", [a.outside for a in searches])
        quantiles("  of which staggering within the rounds", [a.stagger for a in searches])
        quantiles("the slowest call of round 1", [a.slowest(a.first) for a in searches])
        quantiles("the slowest call of round 2", [a.slowest(a.second) for a in searches])
        rounds = Counter(a.rounds for a in searches)
        print(f"  searches by upstream rounds: {dict(sorted(rounds.items()))}")
        print("  the slowest searches (ms): e2e = before + round 1 + between + round 2 + after")
        for a in sorted(searches, key=lambda a: a.span[1] - a.span[0])[-3:]:
            print("    " + a.describe())


@dataclass(frozen=True)
class Anatomy:
    """One search and the calls it made: local paths and trains (round 1), seats (2)."""

    span: Span
    first: list[Span]
    second: list[Span]

    @staticmethod
    def slowest(calls: list[Span]) -> float:
        return max((e - b for b, e in calls), default=0.0)

    @staticmethod
    def extent(calls: list[Span]) -> float:
        """From the first call's arrival to the last answer."""
        return max(e for _, e in calls) - min(b for b, _ in calls) if calls else 0.0

    @property
    def overhead(self) -> float:
        return self.span[1] - self.span[0] - self.slowest(self.first) - self.slowest(self.second)

    @property
    def outside(self) -> float:
        """Before, between and after the rounds: the hub's own work alone."""
        return self.span[1] - self.span[0] - self.extent(self.first) - self.extent(self.second)

    @property
    def stagger(self) -> float:
        """A round longer than its slowest call: calls sent or read one after another."""
        return self.overhead - self.outside

    @property
    def rounds(self) -> int:
        """2; 3 or more when seats were asked again after the first window (sold out):
        each window is one seats query."""
        return bool(self.first) + len(self.second)

    def describe(self) -> str:
        began, ended = self.span
        one, two = sorted(self.first), sorted(self.second)
        end_one = max((e for _, e in one), default=began)
        start_two = two[0][0] if two else end_one
        end_two = max((e for _, e in two), default=start_two)
        parts = (
            (one[0][0] if one else began) - began,
            self.extent(one),
            start_two - end_one,
            self.extent(two),
            ended - end_two,
        )
        return (
            f"{(ended - began) * 1000:.0f} = "
            + " + ".join(f"{part * 1000:.1f}" for part in parts)
            + f"; {len(one)} calls in round 1 (slowest {self.slowest(one) * 1000:.1f}),"
            f" {len(two)} in round 2 (slowest {self.slowest(two) * 1000:.1f})"
        )


def _within(calls: list[Span], began: float, ended: float) -> list[Span]:
    """The calls served within a search."""
    return [call for call in calls if began <= call[0] and call[1] <= ended]


async def _searching(
    apps: list[Connections], places: random.Random, seconds: float, result: JourneyRun
) -> None:
    deadline = time.monotonic() + seconds

    async def app(connection: Connections) -> None:
        while time.monotonic() < deadline:
            await _search(connection, places, result)

    await asyncio.gather(*(app(connection) for connection in apps))


async def _paced(
    app: Connections, places: random.Random, rate: float, seconds: float, result: JourneyRun
) -> None:
    """Searches started `rate` a second on average (exponential gaps), each on a
    connection of its own when the earlier ones are still waiting: an open loop, so the
    load stays what it is however slow the answers."""
    deadline = time.monotonic() + seconds
    running: set[asyncio.Task[None]] = set()
    while time.monotonic() < deadline:
        task = asyncio.create_task(_search(app, places, result))
        running.add(task)
        task.add_done_callback(running.discard)
        await asyncio.sleep(places.expovariate(rate))
    await asyncio.gather(*running)


async def _search(connection: Connections, places: random.Random, result: JourneyRun) -> None:
    """One search between random points of a corridor, noted in `result`."""
    origin, destination = places.choice(PAIRS)
    variables = {
        "from": around(places, origin),
        "to": around(places, destination),
        "after": tomorrow_at(places).isoformat(),
    }
    began = time.monotonic()
    answer = await gql(connection, JOURNEYS, variables)
    ended = time.monotonic()
    found = (answer.get("data") or {}).get("journeys")
    if found is None:
        result.errors += 1
        if result.errors <= 3:
            print(f"  an answer without data: {answer.get('errors')}", file=sys.stderr)
        return
    result.spans.append((began, ended))
    result.degraded += bool(answer.get("errors"))
    result.empty += not found["itineraries"]
    result.missing.update(f"{gap['upstream']} {gap['kind']}" for gap in found["missing"])
    whole = found["itineraries"] and not found["missing"] and not answer.get("errors")
    result.complete += bool(whole)


def around(places: random.Random, city: str) -> dict[str, float]:
    """A random address within SCATTER_KM of a city's centre."""
    lat, lng = CITIES[city]
    distance, bearing = SCATTER_KM * math.sqrt(places.random()), places.uniform(0, 2 * math.pi)
    return {
        "lat": round(lat + distance * math.cos(bearing) / 111.0, 6),
        "lng": round(lng + distance * math.sin(bearing) / (111.0 * math.cos(math.radians(lat))), 6),
    }


def tomorrow_at(places: random.Random) -> datetime:
    """A departure tomorrow (Korean time) between 06:00 and 21:00."""
    day = datetime.now(KST).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, 6, tzinfo=KST) + timedelta(
        minutes=places.randrange(15 * 60)
    )


async def calls_logged(urls: dict[str, str]) -> dict[str, list[Span]]:
    """The calls each journey upstream's sandbox served since the last asking."""
    async with httpx.AsyncClient(timeout=30) as http:
        answers = [await http.get(urls[name] + CALL_LOG_PATH) for name in JOURNEY_UPSTREAMS]
    return {
        name: [(began, ended) for began, ended in answer.json()]
        for name, answer in zip(JOURNEY_UPSTREAMS, answers, strict=True)
    }


# Bookings


@dataclass
class BookingRun:
    """What the citizens saw: tickets with their steps' times, sold-out answers."""

    holds: list[float] = field(default_factory=list)
    cards: list[float] = field(default_factory=list)
    pays: list[float] = field(default_factory=list)
    sold_out: list[float] = field(default_factory=list)
    tickets: list[dict[str, Any]] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0
    trains: list[dict[str, Any]] = field(default_factory=list)
    seats: int = 0

    @property
    def rate(self) -> float:
        return len(self.tickets) / self.elapsed if self.elapsed else 0.0


async def bookings(
    args: argparse.Namespace, url: str, base: str, urls: dict[str, str], pids: dict[str, int]
) -> BookingRun:
    gateway = urls["tosspayments"]
    async with httpx.AsyncClient(timeout=60) as http:
        hooked = await http.post(
            gateway + "/_sandbox/config", json={"webhookUrl": base + WEBHOOK_PATH}
        )
        hooked.raise_for_status()
    tokens = await citizens(url, base, args.clients)
    result = BookingRun(seats=args.seats)
    result.trains = await contended_trains(base, tokens[0], urls["railbooking"], args.seats)
    card_auth = {"Authorization": httpx.BasicAuth(gateway_sandbox.SECRET_KEY, "")._auth_header}
    bookers = [
        (Connections(base, {"Authorization": f"Bearer {token}"}), Connections(gateway, card_auth))
        for token in tokens
    ]
    left = [args.bookings]
    choices = random.Random(args.seed)

    async def citizen(app: Connections, reader: Connections) -> None:
        while left[0] > 0:
            left[0] -= 1
            try:
                await book(app, reader, choices.choice(result.trains), result)
            except Refused as refused:
                result.errors += 1
                if result.errors <= 3:
                    print(f"  a booking refused: {refused}", file=sys.stderr)

    clock = await CpuClock.start(url, pids)
    started = time.monotonic()
    try:
        await asyncio.gather(*(citizen(app, reader) for app, reader in bookers))
    finally:
        result.elapsed = time.monotonic() - started
        for app, reader in bookers:
            await app.close()
            await reader.close()
    cpu = await clock.stop()
    report_bookings(args, result, cpu)
    return result


async def book(
    app: Connections, reader: Connections, train: dict[str, Any], result: BookingRun
) -> None:
    """One attempt: hold a seat, read the card at the gateway, pay; SOLD_OUT is counted."""
    began = time.perf_counter()
    hold_input = {
        "trainNo": train["trainNo"],
        "runDate": train["runDate"],
        "from": train["from"]["code"],
        "to": train["to"]["code"],
    }
    try:
        held = data_of(await gql(app, HOLD, {"i": hold_input, "k": str(uuid.uuid4())}), "holdSeats")
    except Refused as refused:
        if refused.code != "SOLD_OUT":
            raise
        result.sold_out.append(time.perf_counter() - began)
        return
    carding = time.perf_counter()
    card = {"orderId": held["orderId"], "amount": held["amount"], "orderName": "승차권"}
    async with asyncio.timeout(ANSWER_SECONDS):
        status, body = await reader.post("/v1/sandbox/card-present", orjson.dumps(card))
    if status != 200:
        raise RuntimeError(f"card-present answered {status}: {body!r}")
    paying = time.perf_counter()
    variables = {"b": held["id"], "p": orjson.loads(body)["paymentKey"], "k": str(uuid.uuid4())}
    paid = data_of(await gql(app, PAY, variables), "payBooking")
    done = time.perf_counter()
    if paid["status"] != "TICKETED":
        raise Refused(paid["status"], paid)
    result.holds.append(carding - began)
    result.cards.append(paying - carding)
    result.pays.append(done - paying)
    result.tickets.append(paid)


def report_bookings(args: argparse.Namespace, result: BookingRun, cpu: dict[str, float]) -> None:
    trains = ", ".join(
        f"{t['trainNo']} {t['from']['name']}→{t['to']['name']} {t['departsAt'][11:16]}"
        for t in result.trains
    )
    latency = args.latency_ms / 1000
    count = len(result.tickets)
    print(
        f"  {args.clients} citizens of one app, trains {trains} on {result.trains[0]['runDate']}"
        f" with {result.seats} general seats left each"
    )
    print(
        f"  {args.bookings} attempts in {result.elapsed:.1f} s: {count} ticketed"
        f" ({result.rate:.1f} bookings/s), {len(result.sold_out)} SOLD_OUT,"
        f" {result.errors} other refusals"
    )
    if count >= 2:
        ends = [sum(steps) for steps in zip(result.holds, result.cards, result.pays, strict=True)]
        quantiles("end to end (hold+card+pay)", ends)
        quantiles("  holdSeats", result.holds)
        quantiles("  card read at the gateway", result.cards)
        quantiles("  payBooking", result.pays)
        quantiles(
            f"hub overhead (hold+pay - 3 x {args.latency_ms:g} ms)",
            [h + p - 3 * latency for h, p in zip(result.holds, result.pays, strict=True)],
        )
    if len(result.sold_out) >= 2:
        quantiles("a SOLD_OUT answer", result.sold_out)
    print_cpu("attempt", cpu, args.bookings)


async def contended_trains(
    base: str, token: str, operator: str, seats: int
) -> list[dict[str, Any]]:
    """Three trains of tomorrow morning 서울→부산 as a search lists them, each left with
    `seats` general seats (the others sold elsewhere, at the operator's sandbox)."""
    app = Connections(base, {"Authorization": f"Bearer {token}"})
    day = datetime.now(KST).date() + timedelta(days=1)
    after = datetime(day.year, day.month, day.day, 7, tzinfo=KST).isoformat()
    try:
        found = data_of(
            await gql(
                app,
                JOURNEYS,
                {"from": around_centre("서울"), "to": around_centre("부산"), "after": after},
            ),
            "journeys",
        )
    finally:
        await app.close()
    trains: dict[str, dict[str, Any]] = {}
    for itinerary in found["itineraries"]:
        trains.setdefault(itinerary["train"]["trainNo"], itinerary["train"])
    if len(trains) < 3:
        raise RuntimeError(f"a search listed fewer than three trains: {found}")
    chosen = list(trains.values())[:3]
    async with httpx.AsyncClient(timeout=10) as http:
        for train in chosen:
            limited = await http.post(
                operator + "/_sandbox/seats",
                json={
                    "train_no": train["trainNo"],
                    "run_date": train["runDate"],
                    "seat_class": "general",
                    "left": seats,
                },
            )
            limited.raise_for_status()
    return chosen


def around_centre(city: str) -> dict[str, float]:
    lat, lng = CITIES[city]
    return {"lat": lat, "lng": lng}


# No double booking


async def check_bookings(url: str, operator: str, booked: BookingRun) -> list[str]:
    """Offenders, printed: a seat of a train ticketed twice, a ticketed booking without
    exactly one ticket at the operator and one confirmed charge, a ticket or a charge of
    no ticketed booking, counts that differ, a train sold beyond its seats."""
    async with httpx.AsyncClient(timeout=30) as http:
        listed = await http.get(operator + "/_sandbox/reservations")
        listed.raise_for_status()
    reservations: list[dict[str, Any]] = listed.json()
    conn = await asyncpg.connect(url)
    try:
        statuses = dict(
            await conn.fetch("SELECT status, count(*) FROM mobility_bookings GROUP BY status")
        )
        ticketed = {
            str(row["booking_id"])
            for row in await conn.fetch(
                "SELECT booking_id FROM mobility_bookings WHERE status = 'ticketed'"
            )
        }
        charges = Counter(
            str(row["reference"])
            for row in await conn.fetch(
                "SELECT reference FROM payments WHERE source = 'mobility' AND status = 'confirmed'"
            )
        )
    finally:
        await conn.close()
    tickets = [r for r in reservations if r["h_rsv_stt_cd"] == "TICKETED"]
    by_booking = Counter(r["h_ptnr_rsv_id"] for r in tickets)
    seats = Counter(
        (r["h_trn_no"], r["h_run_dt"], seat["h_srcar_no"], seat["h_seat_no"])
        for r in tickets
        for seat in r["seat_infos"]["seat_info"]
    )
    per_train = Counter(int(r["h_trn_no"]) for r in tickets)
    offenders = [f"seat {seat} ticketed {n} times" for seat, n in seats.items() if n > 1]
    offenders += [
        f"booking {b}: {by_booking[b]} tickets, {charges[b]} charges"
        for b in sorted(ticketed)
        if by_booking[b] != 1 or charges[b] != 1
    ]
    offenders += [
        f"ticket of booking {b}, not ticketed at the hub" for b in by_booking.keys() - ticketed
    ]
    offenders += [
        f"charge of booking {b}, not ticketed at the hub" for b in charges.keys() - ticketed
    ]
    counts = (len(booked.tickets), len(ticketed), len(tickets), sum(charges.values()))
    if len(set(counts)) != 1:
        offenders.append(
            "counts differ: seen by the citizens {}, ticketed at the hub {}, tickets at the"
            " operator {}, confirmed charges {}".format(*counts)
        )
    offenders += [
        f"train {train} sold {n} seats of {booked.seats}"
        for train, n in per_train.items()
        if n > booked.seats
    ]
    operator_statuses = Counter(r["h_rsv_stt_cd"] for r in reservations)
    print(
        f"  after: hub bookings {statuses}; operator reservations {dict(operator_statuses)};"
        f" {sum(charges.values())} confirmed charges; tickets per train {dict(per_train)}"
    )
    print(f"double bookings: {len(offenders)}")
    for offender in offenders:
        print(f"  {offender}")
    return offenders


# Apps and citizens


async def app_token(url: str, base: str, scope: str) -> str:
    """A new app's token by client credentials."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    try:
        app = await clients.create(pool, name="bench navigation app", scope_names=scope)
    finally:
        await pool.close()
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        answer = await http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(app.client_id, app.client_secret or ""),
        )
        answer.raise_for_status()
    return str(answer.json()["access_token"])


async def citizens(url: str, base: str, count: int) -> list[str]:
    """Tokens of `count` new citizens, each of whom signed in and approved `mobility:book`
    for one booking app on the consent page, as in a browser (authorization code + PKCE)."""
    scope = "mobility:book mobility:plan"
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    try:
        app = await clients.create(
            pool, name="bench booking app", scope_names=scope, redirect_uris=[REDIRECT]
        )
        accounts = LocalAccounts(pool)
        names = [f"bench_{secrets.token_hex(4)}" for _ in range(count)]
        for name in names:
            await accounts.create(name, "김시민", PASSWORD)
    finally:
        await pool.close()
    return list(
        await asyncio.gather(
            *(consent(base, app.client_id, app.client_secret or "", name, scope) for name in names)
        )
    )


async def consent(base: str, client_id: str, secret: str, username: str, scope: str) -> str:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": scope,
        "state": secrets.token_urlsafe(8),
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
    }
    async with httpx.AsyncClient(base_url=base, timeout=30) as browser:
        page = await browser.get(f"/oauth/authorize?{urlencode(query)}")
        signed_in = await browser.post(
            "/oauth/login",
            data={**hidden_fields(page.text), "username": username, "password": PASSWORD},
        )
        if signed_in.status_code != 303:
            raise RuntimeError(f"the sign-in answered {signed_in.status_code}")
        asked = await browser.get(signed_in.headers["location"])
        approved = await browser.post(
            "/oauth/authorize", data={**hidden_fields(asked.text), "decision": "approve"}
        )
        location = approved.headers.get("location", "")
        code = parse_qs(urlsplit(location).query).get("code")
        if approved.status_code != 302 or not code:
            raise RuntimeError(f"the consent answered {approved.status_code}: {location}")
        tokens = await browser.post(
            "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": code[0],
                "redirect_uri": REDIRECT,
                "code_verifier": verifier,
            },
            auth=(client_id, secret),
        )
        tokens.raise_for_status()
    return str(tokens.json()["access_token"])


def hidden_fields(page: str) -> dict[str, str]:
    return {
        html.unescape(name): html.unescape(value)
        for name, value in re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', page)
    }


# Helpers


async def gql(app: Connections, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    async with asyncio.timeout(ANSWER_SECONDS):
        status, body = await app.post(
            "/graphql", orjson.dumps({"query": query, "variables": variables})
        )
    answer: dict[str, Any] = orjson.loads(body)
    if status != 200 and not answer.get("errors"):
        raise RuntimeError(f"the hub answered {status}: {answer}")
    return answer


def data_of(answer: dict[str, Any], name: str) -> dict[str, Any]:
    """The field's data, or Refused with the first error's code."""
    if answer.get("errors"):
        raise Refused(str(answer["errors"][0].get("extensions", {}).get("code")), answer)
    found: dict[str, Any] = answer["data"][name]
    return found


def print_cpu(unit: str, cpu: dict[str, float], count: int) -> None:
    if not cpu or not count:
        return
    spent = {name: seconds / count for name, seconds in cpu.items()}
    print(
        f"  CPU per {unit}: "
        + ", ".join(f"{name} {seconds * 1000:.1f} ms" for name, seconds in spent.items())
        + f"; {sum(spent.values()) * 1000:.1f} ms in all"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20, help="apps, then citizens, at once")
    parser.add_argument("--latency-ms", type=float, default=30, help="every upstream call's")
    parser.add_argument("--solo-seconds", type=float, default=6, help="one client, caches off")
    parser.add_argument("--light-rate", type=float, default=5, help="searches/s, open loop")
    parser.add_argument("--light-seconds", type=float, default=10, help="measured, open loop")
    parser.add_argument("--seconds", type=float, default=20, help="measured, caches off")
    parser.add_argument("--cached-seconds", type=float, default=12, help="measured, caches on")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of searches first")
    parser.add_argument("--bookings", type=int, default=240, help="attempts, in all")
    parser.add_argument("--seats", type=int, default=60, help="left on each of 3 trains")
    parser.add_argument("--workers", type=int, default=1, help="hub processes (IEUM_WORKERS)")
    parser.add_argument("--concurrency", type=int, default=256, help="calls in flight per adapter")
    parser.add_argument("--pool", type=int, default=20, help="IEUM_DB_POOL_MAX per process")
    parser.add_argument("--seed", type=int, default=1, help="of the addresses and trains chosen")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the hub on the way out
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
