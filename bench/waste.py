"""Collection scans through GraphQL with tag verification, and the live feed's delivery while
scanning, against the hub's floor, the verification alone and the resolver alone, in one run.

    .venv/bin/python bench/waste.py [--scans 4000] [--collectors 20] [--qr-share 0.5]
        [--workers 2] [--pool 20] [--warmup 5] [--upload-batch 50] [--profile FILE]

Starts embedded PostgreSQL and broker (or uses IEUM_DATABASE_URL / IEUM_KAFKA_BOOTSTRAP)
with a fresh database, dropped at the end, and seeds it straight in SQL: one district's
sites, a bin per scan, each bin tagged as `ieum waste tags-issue` tags it (a signed QR
label, and an NTAG 424 DNA tag for the NFC share), and a pickup paid and scheduled for
today on every bin (the payments are not the point here: bench/payments.py measures them).
The hub runs as `ieum serve` runs it with IEUM_WORKERS, in processes of its own.

Twenty collector companies (OAuth clients with waste:collect, registered for the district
by city staff through GraphQL) each scan their share of the bins over a keep-alive
connection, one scanBin after another, as a phone at the truck would: every scan has its
own id and pickup, and an NFC scan carries a tap the tag would make (its AES-encrypted UID
and read counter, and the CMAC of its own diversified key). City staff follow
`wasteCollections` over a WebSocket (graphql-transport-ws) from another process, so its
receive times are not delayed by the collectors' loop; a scan's delivery latency is its
receive time minus the time its scanBin was sent (one monotonic clock for both processes),
matched by scan id. The load client is the lean one of bench/harness.py: it shares the
hub's two cores, and so does PostgreSQL; the CPU each of them spent per scan is printed
(from /proc), with how busy the whole machine was meanwhile. Then the phones scan every bin
again, over a second pickup of the day, as offline phones do: uploadScans of
--upload-batch scans a request.

Baselines in the same run:
- `{ __typename }`, as many requests from the same 20 connections with the same tokens:
  HTTP, the token check and GraphQL with no resolver, the hub's floor for any request;
- the tags' verification alone, in this process with the hub stopped: the Verifier the hub
  uses (QR: an Ed25519 check against keys in memory; NFC: AES and two CMACs, then the one
  UPDATE that moves the tag's read counter forward) and the NFC cryptography without it;
- the scan resolver (`resolvers.waste.scans.scan`: verification and the scan's
  transaction) called in this process, 20 at once, over a third paid pickup of every bin,
  on pools set up as the hub's: the scan path without HTTP and GraphQL, in one process.

--profile FILE runs a single hub process with cProfile on while the scanBin load runs and
writes its stats to FILE (figures are then lower: the profiler slows the hub down); the
top entries are printed. Its times are wall times: a `send` that wakes PostgreSQL or the
client on a busy machine is charged with however long the sender then waits for a core.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import http.client
import multiprocessing
import os
import pstats
import random
import secrets
import signal
import socket
import statistics
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import orjson
import websockets
from harness import Connections, servers

from auth import clients
from hub import processes
from hub.bootstrap import prepare_database
from hub.core import db, gc_tuning
from hub.core.servers import Servers
from hub.core.settings import Settings
from hub.domains import installed
from resolvers.waste import scans
from resolvers.waste.collectors import Collector
from resolvers.waste.pickups import KST, korea_today
from resolvers.waste.settings import WasteSettings
from resolvers.waste.tags import issue, keys, sun
from resolvers.waste.tags.verify import NfcTap, QrTag, Verifier

installed()  # the domains' settings sections and scopes, as `ieum` loads them

DISTRICT = "11110"
HOME = (37.5700, 126.9800)  # sites spread within about a kilometre of it
BINS_PER_SITE = 4
LITRES = 120
UNIT_PRICE = 10  # won per litre: a litre tariff, so no settlement after weighing
SCAN = """mutation($i: ScanInput!) { scanBin(input: $i) {
  scanId distanceM flagged duplicate pickup { id status collectedAt } } }"""
UPLOAD = """mutation($s: [ScanInput!]!) { uploadScans(scans: $s) {
  scanId collected code result { duplicate } } }"""
REGISTER = """mutation($c: String!, $d: [String!]!) {
  registerCollector(clientId: $c, name: "벤치환경", districts: $d) { id } }"""
FLOOR = "{ __typename }"
FOLLOW = """subscription($d: String!) { wasteCollections(districtCode: $d) {
  scanId pickupId binId districtCode collectorId collectedAt weightKg volumeLitres flagged } }"""
ANSWER_SECONDS = 30  # a hung request fails the run instead of stalling it
DELIVERY_WAIT_SECONDS = 10  # after the last scan, for the feed to catch up
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Bin:
    bin_id: uuid.UUID
    lat: float
    lng: float
    label: str  # the QR label's text (every bin has one)
    nfc: issue.NfcTag | None  # and an NFC tag, for the NFC share, which is scanned instead

    @property
    def kind(self) -> str:
        return "qr" if self.nfc is None else "nfc"

    def tag(self, counter: int) -> str:
        """What the phone reads: the label, or the tag's SUN URL on its `counter`th read."""
        if self.nfc is None:
            return self.label
        uid = bytes.fromhex(self.nfc.uid)
        picc_data, cmac = sun.tap(self.nfc.keys[1], self.nfc.keys[2], uid, counter)
        return f"https://ieum.example/w?picc_data={picc_data}&cmac={cmac}"


@dataclass
class Sample:
    scan_id: str
    kind: str
    sent: float  # when its request was sent (an upload's: the batch's)
    answered: float


@dataclass
class Phone:
    """A collector company's phone: its keep-alive connection to the hub and its scans."""

    connection: Connections
    samples: list[Sample] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)

    async def scan_all(self, share: Sequence[Bin], tags: Sequence[str], batch: int) -> None:
        """Scan `share`, one scanBin after another, or in uploads of `batch` (batch > 0)."""
        if not batch:
            for bin_, tag in zip(share, tags, strict=True):
                await self.scan(bin_, tag)
            return
        for first in range(0, len(share), batch):
            await self.upload(share[first : first + batch], tags[first : first + batch])

    async def scan(self, bin_: Bin, tag: str) -> None:
        scan = _scan_input(bin_, tag)
        body = orjson.dumps({"query": SCAN, "variables": {"i": scan}})
        sent = time.monotonic()
        answer = await self.post(body)
        answered = time.monotonic()
        if answer.get("errors"):
            self.refused[str(answer["errors"][0].get("extensions", {}).get("code"))] += 1
            return
        found = answer["data"]["scanBin"]
        if found["duplicate"] or found["flagged"] or found["pickup"]["status"] != "COLLECTED":
            self.refused["UNEXPECTED_ANSWER"] += 1
            return
        self.samples.append(Sample(scan["scanId"], bin_.kind, sent, answered))

    async def upload(self, bins: Sequence[Bin], tags: Sequence[str]) -> None:
        scans_ = [_scan_input(b, t) for b, t in zip(bins, tags, strict=True)]
        body = orjson.dumps({"query": UPLOAD, "variables": {"s": scans_}})
        sent = time.monotonic()
        answer = await self.post(body)
        answered = time.monotonic()
        if answer.get("errors"):
            self.refused[str(answer["errors"][0].get("extensions", {}).get("code"))] += len(bins)
            return
        for bin_, outcome in zip(bins, answer["data"]["uploadScans"], strict=True):
            if not outcome["collected"] or outcome["result"]["duplicate"]:
                self.refused[outcome["code"] or "UNEXPECTED_ANSWER"] += 1
                continue
            self.samples.append(Sample(outcome["scanId"], bin_.kind, sent, answered))

    async def floor(self) -> float:
        started = time.perf_counter()
        answer = await self.post(orjson.dumps({"query": FLOOR}))
        if answer.get("errors") or answer["data"]["__typename"] != "Query":
            raise RuntimeError(f"the hub answered {answer}")
        return time.perf_counter() - started

    async def post(self, body: bytes) -> dict[str, Any]:
        async with asyncio.timeout(ANSWER_SECONDS):
            status, answer = await self.connection.post("/graphql", body)
        if status != 200:
            raise RuntimeError(f"the hub answered {status}: {answer!r}")
        found: dict[str, Any] = orjson.loads(answer)
        return found


def _scan_input(bin_: Bin, tag: str) -> dict[str, Any]:
    """A scan as the phone sends it: its own id, made and timed as it scans."""
    return {
        "scanId": str(uuid.uuid4()),
        "tag": tag,
        "scannedAt": datetime.now(KST).isoformat(),
        "lat": bin_.lat,
        "lng": bin_.lng + 0.0002,  # about 18 m east of the site
        "weightKg": 31.5,
    }


@dataclass(frozen=True)
class Load:
    """What one measured load did."""

    elapsed: float
    samples: list[Sample]
    refused: Counter[str]
    cpu: CpuUsed


# The run


async def run(args: argparse.Namespace) -> None:
    tag_secret = secrets.token_urlsafe(32)
    workers = 1 if args.profile else args.workers
    settings = Settings.from_env(
        ingest=False,
        log_level="warning",
        workers=workers,
        db_pool_max=args.pool,
        tag_secret=tag_secret,
        sandbox=False,  # payments: no gateway is called here
    )
    secret = keys.derive_secret(tag_secret)
    with servers(settings) as (server_url, bootstrap):
        async with fresh_database(server_url) as url:
            await prepare_database(url, settings)
            pool = await db.create_pool(url, settings)  # as the hub's: its plans, its reset
            try:
                began = time.perf_counter()
                warm = args.warmup * args.collectors
                bins = await seed(pool, secret, args.scans + warm, args.qr_share)
                city = await clients.create(pool, name="bench city staff", scope_names="waste:city")
                crews = [
                    await clients.create(
                        pool, name=f"bench collector {n}", scope_names="waste:collect"
                    )
                    for n in range(args.collectors)
                ]
                nfc = sum(b.nfc is not None for b in bins)
                print(
                    f"seeded {len(bins)} bins ({len(bins) - nfc} QR, {nfc} NFC) with a paid"
                    f" pickup each in {time.perf_counter() - began:.1f} s"
                )
                with hub(settings, Servers(url, bootstrap), args.profile) as (base, pids):
                    await through_the_hub(
                        args, pool, base, pids, city, crews, bins[:warm], bins[warm:]
                    )
                print_profile(args.profile)
                await verification_alone(pool, secret, bins, args.collectors)
                await resolver_alone(pool, url, settings, bins[warm:], crews, args.collectors)
            finally:
                await pool.close()


async def through_the_hub(
    args: argparse.Namespace,
    pool: asyncpg.Pool,
    base: str,
    hub_pids: list[int],
    city: clients.NewClient,
    crews: Sequence[clients.NewClient],
    warmup: Sequence[Bin],
    measured: Sequence[Bin],
) -> None:
    city_token, phones = await sign_in(base, city, crews)
    n = len(phones)
    shares = [list(measured[i::n]) for i in range(n)]
    hub_mode = "1 hub process under cProfile" if args.profile else f"{args.workers} hub processes"
    print(
        f"{n} collectors, {hub_mode} (IEUM_WORKERS) with IEUM_DB_POOL_MAX={args.pool} each,"
        f" {args.warmup} warm-up scans per collector\n"
    )
    with following(base, city_token) as feed:
        pids = {"hub": hub_pids, "load client": [os.getpid()], "feed": [feed.pid]}
        # Warm-up: every connection open, every process's caches filled, the feed live.
        firsts = [warmup[i::n] for i in range(n)]
        await asyncio.gather(
            *(p.scan_all(f, [b.tag(1) for b in f], 0) for p, f in zip(phones, firsts, strict=True))
        )
        for _ in range(args.warmup):
            await asyncio.gather(*(p.floor() for p in phones))
        warm_ids = [s.scan_id for p in phones for s in p.samples]
        heard, _ = feed.wait_for(warm_ids, DELIVERY_WAIT_SECONDS)
        if len(heard) < len(warm_ids):
            print(f"warm-up: the feed delivered {len(heard)} of {len(warm_ids)} scans")

        before = await cpu(pool, pids)
        floor = await floor_rate(phones, [len(s) for s in shares])
        floor_cpu = cpu_used(before, await cpu(pool, pids))

        profiling(args.profile, hub_pids, signal.SIGUSR1)
        scanned = await load(pool, pids, phones, shares, counter=1, batch=0)
        profiling(args.profile, hub_pids, signal.SIGUSR2)
        heard, feed_errors = feed.wait_for(
            [s.scan_id for s in scanned.samples], DELIVERY_WAIT_SECONDS
        )
        uploaded = None
        if args.upload_batch:
            await add_pickups(pool, [b.bin_id for b in measured])  # each bin's second today
            uploaded = await load(pool, pids, phones, shares, counter=2, batch=args.upload_batch)
    for phone in phones:
        await phone.connection.close()

    print_load(
        "scanBin", scanned, "verified scans/s (target 1000)", "scan latency, all", kinds=True
    )
    floor_rate_ = len(floor[1]) / floor[0]
    print(f"baseline {FLOOR}: {floor_rate_:.0f} requests/s, same connections and tokens")
    quantiles(f"{FLOOR} latency", floor[1])
    print_cpu("request", floor_cpu, len(floor[1]))
    print(f"  ratio scans/s / {FLOOR} requests/s: {rate(scanned) / floor_rate_:.3f}\n")

    delivered = [heard[s.scan_id] - s.sent for s in scanned.samples if s.scan_id in heard]
    print(
        f"wasteCollections while scanning: {len(delivered)} of {len(scanned.samples)}"
        f" collections delivered{f'; the feed ended: {feed_errors}' if feed_errors else ''}"
    )
    quantiles("delivery (received - scanBin sent)", delivered, target="p99 target 1000 ms")
    quantiles(
        "after the answer (received - answered)",
        [heard[s.scan_id] - s.answered for s in scanned.samples if s.scan_id in heard],
    )
    if uploaded is not None:
        print()
        print_load(
            f"uploadScans, {args.upload_batch} a request",
            uploaded,
            "verified scans/s",
            "request latency",
        )
        print(f"  ratio uploadScans / scanBin scans/s: {rate(uploaded) / rate(scanned):.2f}")
    print()


async def sign_in(
    base: str, city: clients.NewClient, crews: Sequence[clients.NewClient]
) -> tuple[str, list[Phone]]:
    """City staff's token, and a phone of each collector company, which the city registers
    for the district first."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        city_token = await token(http, city)
        phones = []
        for crew in crews:
            registered = await http.post(
                "/graphql",
                headers={"Authorization": f"Bearer {city_token}"},
                json={"query": REGISTER, "variables": {"c": crew.client_id, "d": [DISTRICT]}},
            )
            if registered.json().get("errors"):
                raise RuntimeError(f"registerCollector: {registered.json()}")
            headers = {"Authorization": f"Bearer {await token(http, crew)}"}
            phones.append(Phone(Connections(base, headers)))
    return city_token, phones


async def load(
    pool: asyncpg.Pool,
    pids: dict[str, list[int]],
    phones: Sequence[Phone],
    shares: Sequence[Sequence[Bin]],
    *,
    counter: int,
    batch: int,
) -> Load:
    """Every phone scans its share at once (NFC: each tag's `counter`th read)."""
    for phone in phones:
        phone.samples.clear()
        phone.refused.clear()
    # The tags are read (the NFC taps made) before the clock starts: the tags' work.
    tags = [[b.tag(counter) for b in share] for share in shares]
    before = await cpu(pool, pids)
    started = time.monotonic()
    await asyncio.gather(
        *(p.scan_all(s, t, batch) for p, s, t in zip(phones, shares, tags, strict=True))
    )
    elapsed = time.monotonic() - started
    used = cpu_used(before, await cpu(pool, pids))
    refused: Counter[str] = Counter()
    for phone in phones:
        refused.update(phone.refused)
    return Load(elapsed, [s for p in phones for s in p.samples], refused, used)


def rate(done: Load) -> float:
    return len(done.samples) / done.elapsed


def print_load(name: str, done: Load, unit: str, latency: str, kinds: bool = False) -> None:
    refused = f"; not collected: {dict(done.refused)}" if done.refused else ""
    print(
        f"{name}: {len(done.samples)} scans collected in {done.elapsed:.2f} s:"
        f" {rate(done):.0f} {unit}{refused}"
    )
    requests = {(s.sent, s.answered) for s in done.samples}  # an upload's scans share theirs
    quantiles(latency, [answered - sent for sent, answered in requests])
    for kind in ("qr", "nfc") if kinds else ():
        quantiles(
            f"scan latency, {kind.upper()}",
            [s.answered - s.sent for s in done.samples if s.kind == kind],
        )
    print_cpu("scan", done.cpu, len(done.samples))


async def floor_rate(phones: Sequence[Phone], counts: Sequence[int]) -> tuple[float, list[float]]:
    """`{ __typename }` as many times from each phone as it will scan, all at once: the
    elapsed seconds and each request's latency."""

    async def loop(phone: Phone, count: int) -> list[float]:
        return [await phone.floor() for _ in range(count)]

    started = time.monotonic()
    found = await asyncio.gather(*(loop(p, c) for p, c in zip(phones, counts, strict=True)))
    return time.monotonic() - started, [latency for each in found for latency in each]


# Baselines in this process


async def verification_alone(
    pool: asyncpg.Pool, secret: bytes, bins: Sequence[Bin], concurrency: int
) -> None:
    """The Verifier the hub uses, on the same tags (NFC: their third read)."""
    verifier = Verifier(pool, secret)
    labels = [QrTag(b.label) for b in bins]  # every bin has a live label, NFC or not
    taps = [scans.tag_of(b.tag(3)) for b in bins if b.nfc is not None]
    await verifier.verify(labels[0])  # the keys, read once
    print("tag verification alone, in this process (the hub stopped):")
    for name, tags in (("QR verify()", labels), ("NFC verify() (+ counter UPDATE)", taps)):
        if not tags:
            continue
        started = time.perf_counter()
        await in_parallel(concurrency, [verifier.verify(t) for t in tags])
        elapsed = time.perf_counter() - started
        print(f"  {name:34} {len(tags) / elapsed:9.0f} calls/s ({concurrency} at once)")
    if taps:  # what NFC verify() computes before its UPDATE, as its _match does
        master = (await keys.current(pool, secret, keys.NFC)).open(secret)
        meta = sun.meta_read_key(master)
        started = time.perf_counter()
        for tap in taps:
            assert isinstance(tap, NfcTap)
            picc = sun.decrypt_picc(meta, bytes.fromhex(tap.picc_data))
            assert picc is not None
            file_key = sun.tag_key(master, picc.uid, sun.FILE_READ_KEY)
            assert sun.mac_matches(file_key, picc, bytes.fromhex(tap.cmac))
        elapsed = time.perf_counter() - started
        print(f"  {'NFC AES + CMACs only':34} {len(taps) / elapsed:9.0f} calls/s (one core)")


async def resolver_alone(
    pool: asyncpg.Pool,
    url: str,
    settings: Settings,
    bins: Sequence[Bin],
    crews: Sequence[clients.NewClient],
    concurrency: int,
) -> None:
    """scans.scan for another paid pickup of each bin, as the hub's resolver calls it (on a
    scans' pool of its own, as the hub's)."""
    await add_pickups(pool, [b.bin_id for b in bins])
    verifier = Verifier(pool, keys.secret(settings))
    max_distance = settings.section(WasteSettings).scan_max_distance_m
    companies = [
        Collector(
            collector_id=c.client_id,
            name="벤치환경",
            districts=[DISTRICT],
            created_at=datetime.now(KST),
        )
        for c in crews
    ]
    work = []
    for n, bin_ in enumerate(bins):
        new = scans.NewScan(
            scan_id=uuid.uuid4(),
            tag=bin_.tag(4),  # NFC: the fourth read (scanBin's, uploadScans', verify()'s first)
            scanned_at=datetime.now(KST),
            lat=bin_.lat,
            lng=bin_.lng + 0.0002,
            weight_kg=Decimal("31.5"),
        )
        work.append((companies[n % len(companies)], new))
    opened = settings.model_copy(update={"db_pool_min": concurrency})  # as the hub's, warm
    scans_db = await db.create_pool(url, opened, scans.POOL_SETTINGS)
    try:
        before = await cpu(pool, {"this process": [os.getpid()]})
        started = time.perf_counter()
        done = await in_parallel(
            concurrency,
            [scans.scan(scans_db, verifier, c, new, max_distance) for c, new in work],
        )
        elapsed = time.perf_counter() - started
        used = cpu_used(before, await cpu(pool, {"this process": [os.getpid()]}))
    finally:
        await scans_db.close()
    collected = sum(not d.duplicate and d.pickup.status == "collected" for d in done)
    print(
        f"  {'scans.scan() (resolver + SQL)':34} {len(done) / elapsed:9.0f} scans/s"
        f" ({concurrency} at once, {collected} of {len(done)} collected, one process)"
    )
    print_cpu("scan", used, len(done), indent="    ")


async def in_parallel(concurrency: int, work: Sequence[Any]) -> list[Any]:
    """Await `work` (coroutines) with at most `concurrency` running at once, in order."""
    results: list[Any] = [None] * len(work)
    queue = iter(enumerate(work))

    async def worker() -> None:
        for index, coroutine in queue:
            results[index] = await coroutine

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


# The world: a fresh database, its bins and pickups, and the hub


@contextlib.asynccontextmanager
async def fresh_database(server_url: str) -> AsyncIterator[str]:
    """A database of the bench's own, dropped whole at the end."""
    name = f"ieum_bench_waste_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
        finally:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def seed(pool: asyncpg.Pool, secret: bytes, count: int, qr_share: float) -> list[Bin]:
    """`count` bins in one district, tagged (the first `qr_share` scanned by QR, the rest
    by NFC, shuffled), each with a pickup paid and scheduled for today."""
    rng = random.Random(13)
    generator = uuid.uuid4()
    await pool.execute(
        "INSERT INTO waste_generators (generator_id, business_no, name, representative, phone,"
        " owner_client) VALUES ($1, '1234567890', '벤치식당', '김대표', '010-0000-0000', 'bench')",
        generator,
    )
    site_count = -(-count // BINS_PER_SITE)
    site_ids = [uuid.uuid4() for _ in range(site_count)]
    places = [
        (HOME[0] + rng.uniform(-0.01, 0.01), HOME[1] + rng.uniform(-0.01, 0.01)) for _ in site_ids
    ]
    await pool.execute(
        "INSERT INTO waste_sites (site_id, generator_id, name, address, lat, lng, district_code)"
        " SELECT s, $2, '본점', '서울 종로구 세종대로 1', lat, lng, $5"
        " FROM unnest($1::uuid[], $3::float8[], $4::float8[]) AS t(s, lat, lng)",
        site_ids,
        generator,
        [p[0] for p in places],
        [p[1] for p in places],
        DISTRICT,
    )
    bin_ids = [uuid.uuid4() for _ in range(count)]
    await pool.execute(
        "INSERT INTO waste_bins (bin_id, site_id, volume_litres)"
        " SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int[])",
        bin_ids,
        [site_ids[i // BINS_PER_SITE] for i in range(count)],
        [LITRES] * count,
    )
    for algorithm in (keys.QR, keys.NFC):  # as `ieum waste tags-issue` makes them first
        await keys.current(pool, secret, algorithm)
    qr_count = round(count * qr_share)
    by_nfc = set(rng.sample(bin_ids, count - qr_count))
    uids = {b: "04" + secrets.token_hex(6).upper() for b in by_nfc}
    issued = await issue.issue(pool, secret, await issue.bins(pool, bin_ids), uids)
    labels = {label.bin_id: label.text for label in issued.labels}
    tags = {tag.bin_id: tag for tag in issued.nfc}
    await add_pickups(pool, bin_ids)
    return [
        Bin(b, *places[i // BINS_PER_SITE], labels[b], tags.get(b)) for i, b in enumerate(bin_ids)
    ]


async def add_pickups(pool: asyncpg.Pool, bin_ids: Sequence[uuid.UUID]) -> None:
    """A pickup of each bin, paid and scheduled for today, as the pickups flow leaves it
    once the payments domain confirmed its payment."""
    today: date = korea_today()
    await pool.execute(
        "INSERT INTO waste_pickups (pickup_id, bin_id, site_id, district_code, status, basis,"
        " unit_price, quoted_amount, payment_id, pickup_day, requested_by, paid_at)"
        " SELECT gen_random_uuid(), b.bin_id, b.site_id, s.district_code, 'scheduled',"
        " 'litre', $2, b.volume_litres * $2, gen_random_uuid(), $3, 'bench', now()"
        " FROM waste_bins b JOIN waste_sites s USING (site_id) WHERE b.bin_id = ANY($1)"
        " ON CONFLICT DO NOTHING",  # a bin whose first pickup a refused scan left open
        list(bin_ids),
        UNIT_PRICE,
        today,
    )


@contextmanager
def hub(settings: Settings, found: Servers, profile: str | None) -> Iterator[tuple[str, list[int]]]:
    """The hub as `ieum serve` runs it with IEUM_WORKERS, in processes of its own; with
    `profile`, one process under cProfile."""
    sockets = processes.listening_sockets("127.0.0.1", 0, settings.workers)
    port = sockets[0].getsockname()[1]
    settings = settings.model_copy(update={"port": port, "public_url": f"http://127.0.0.1:{port}"})
    if profile:
        context = multiprocessing.get_context("spawn")
        process = context.Process(target=_profiled, args=(settings, found, sockets[0], profile))
        process.start()
        sockets[0].close()
        started: list[BaseProcess] = [process]
    else:
        group = processes.Group(settings, found, None, {})
        group.start(sockets)  # the group holds each process's ready Event until it unpickles
        group.wait_ready(60)
        started = [worker.process for worker in group.workers]
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError):
                answer = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                answer.request("GET", "/healthz")
                if answer.getresponse().status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the hub did not start")
            time.sleep(0.2)
        time.sleep(2)  # every process is up, not just the first to answer
        yield f"http://127.0.0.1:{port}", [p.pid for p in started if p.pid is not None]
    finally:
        processes.stop(started, 30)


def _profiled(settings: Settings, found: Servers, sock: socket.socket, path: str) -> None:
    """One hub process as processes.start runs each, profiled from SIGUSR1 to SIGUSR2."""
    server = processes.Server(processes.server_config(settings, found, None))
    profiler = cProfile.Profile()

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, setattr, server, "should_exit", True)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not serving.done():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        gc_tuning.settle_after_startup()
        loop.add_signal_handler(signal.SIGUSR1, profiler.enable)
        loop.add_signal_handler(signal.SIGUSR2, profiler.disable)
        await serving

    asyncio.run(serve())
    profiler.dump_stats(path)


def profiling(path: str | None, pids: list[int], start_or_stop: signal.Signals) -> None:
    if path:
        for pid in pids:
            os.kill(pid, start_or_stop)


def print_profile(path: str | None) -> None:
    if not path:
        return
    print(f"hub profile ({path}), by own time:")
    stats = pstats.Stats(path)
    stats.sort_stats("tottime").print_stats(30)
    print("by cumulative time:")
    stats.sort_stats("cumulative").print_stats(40)


async def token(http: httpx.AsyncClient, client: clients.NewClient) -> str:
    """A client-credentials token, as a collector's phone or a city desk gets one."""
    answer = await http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client.client_id, client.client_secret or ""),
    )
    answer.raise_for_status()
    return str(answer.json()["access_token"])


# City staff following the live feed, in a process of their own


class Feed:
    """The following process, asked for the receive times of scans by id."""

    def __init__(self, pipe: Connection, pid: int) -> None:
        self.pipe = pipe
        self.pid = pid

    def wait_for(self, scan_ids: list[str], seconds: float) -> tuple[dict[str, float], list[str]]:
        """Receive times of `scan_ids` (those heard within `seconds`), and any feed error."""
        self.pipe.send((scan_ids, seconds))
        heard, errors = self.pipe.recv()
        return heard, errors


@contextmanager
def following(base: str, city_token: str) -> Iterator[Feed]:
    parent, child = multiprocessing.Pipe()
    ws_url = base.replace("http://", "ws://") + "/graphql"
    process = multiprocessing.get_context("spawn").Process(
        target=_follow, args=(ws_url, city_token, child), daemon=True
    )
    process.start()
    try:
        ready = parent.recv()
        if ready != "ready":
            raise RuntimeError(f"the feed did not start: {ready}")
        assert process.pid is not None
        yield Feed(parent, process.pid)
    finally:
        parent.send(None)
        process.join(10)


def _follow(ws_url: str, city_token: str, pipe: Connection) -> None:
    asyncio.run(_listen(ws_url, city_token, pipe))


async def _listen(ws_url: str, city_token: str, pipe: Connection) -> None:
    heard: dict[str, float] = {}
    errors: list[str] = []
    try:
        ws = await websockets.connect(
            ws_url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")], max_queue=None
        )
    except OSError as exc:
        pipe.send(repr(exc))
        return
    async with ws:
        init = {"Authorization": f"Bearer {city_token}"}
        await ws.send(orjson.dumps({"type": "connection_init", "payload": init}).decode())
        ack = orjson.loads(await ws.recv())
        if ack["type"] != "connection_ack":
            pipe.send(f"no connection_ack: {ack}")
            return
        payload = {"query": FOLLOW, "variables": {"d": DISTRICT}}
        await ws.send(orjson.dumps({"id": "1", "type": "subscribe", "payload": payload}).decode())

        async def read() -> None:
            async for raw in ws:
                now = time.monotonic()
                message = orjson.loads(raw)
                if message["type"] == "next" and not message["payload"].get("errors"):
                    heard[message["payload"]["data"]["wasteCollections"]["scanId"]] = now
                elif message["type"] == "ping":
                    await ws.send(orjson.dumps({"type": "pong"}).decode())
                else:
                    errors.append(str(message)[:300])

        reading = asyncio.create_task(read())
        await asyncio.sleep(0.5)  # the subscription starts listening (no message says so)
        pipe.send("ready")
        while (asked := await asyncio.to_thread(pipe.recv)) is not None:
            wanted, seconds = asked
            deadline = time.monotonic() + seconds
            while any(s not in heard for s in wanted) and time.monotonic() < deadline:
                if reading.done():
                    errors.append(f"the WebSocket closed: {reading.exception()!r}")
                    break
                await asyncio.sleep(0.05)
            pipe.send(({s: heard[s] for s in wanted if s in heard}, errors))
        reading.cancel()


# Figures


@dataclass(frozen=True)
class CpuReading:
    """CPU seconds so far of each process by group, and the machine's busy and total
    seconds (all cores), from /proc: Linux, with PostgreSQL on this machine (else those
    figures are left out)."""

    groups: dict[str, dict[int, float]]
    busy: float
    total: float


async def cpu(pool: asyncpg.Pool, pids: dict[str, list[int]]) -> CpuReading:
    """A reading of `pids` and of this database's PostgreSQL backends."""
    rows = await pool.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
    groups = {**pids, "PostgreSQL": [row["pid"] for row in rows]}
    found = {
        name: {pid: seconds for pid in group if (seconds := _cpu_seconds(pid)) is not None}
        for name, group in groups.items()
    }
    return CpuReading(found, *_machine_seconds())


def _machine_seconds() -> tuple[float, float]:
    """Busy and total CPU seconds of the machine, all cores."""
    try:
        ticks = [int(n) for n in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
    except OSError:
        return 0.0, 0.0
    idle = ticks[3] + ticks[4]  # idle, iowait (guest time is already in user)
    return (sum(ticks) - idle) / CLOCK_TICKS, sum(ticks) / CLOCK_TICKS


def _cpu_seconds(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command's name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


@dataclass(frozen=True)
class CpuUsed:
    groups: dict[str, float]  # CPU seconds of each group in the window
    machine: float  # the whole machine's busy share of its cores meanwhile, 0..1 (0: unknown)


def cpu_used(before: CpuReading, after: CpuReading) -> CpuUsed:
    """What each group spent between the readings (a backend opened between them: all of
    its own)."""
    groups = {
        name: sum(
            seconds - before.groups.get(name, {}).get(pid, 0.0) for pid, seconds in now.items()
        )
        for name, now in after.groups.items()
        if now
    }
    total = after.total - before.total
    return CpuUsed(groups, (after.busy - before.busy) / total if total > 0 else 0.0)


def print_cpu(what: str, used: CpuUsed, count: int, indent: str = "  ") -> None:
    """CPU per `what` in each group, and how busy the machine was meanwhile."""
    if not count:
        return
    ours = sum(used.groups.values())
    parts = " + ".join(f"{name} {sec / count * 1000:.2f}" for name, sec in used.groups.items())
    line = f"{indent}CPU per {what}: {parts} = {ours / count * 1000:.2f} ms"
    if used.machine:
        line += f"; the machine {used.machine:.0%} busy ({os.cpu_count()} cores)"
    print(line)


def quantiles(name: str, values: list[float], target: str = "") -> None:
    if len(values) < 2:
        print(f"  {name:40} ({len(values)} values)")
        return
    q = statistics.quantiles(values, n=100, method="inclusive")  # never beyond the extremes
    print(
        f"  {name:40} p50 {q[49] * 1000:7.2f} ms   p90 {q[89] * 1000:7.2f} ms"
        f"   p99 {q[98] * 1000:7.2f} ms   max {max(values) * 1000:7.2f} ms"
        f"{f'   ({target})' if target else ''}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=4000, help="measured, in all")
    parser.add_argument("--collectors", type=int, default=20, help="concurrent phones")
    parser.add_argument("--qr-share", type=float, default=0.5, help="scans of QR labels, 0..1")
    parser.add_argument("--workers", type=int, default=2, help="hub processes (IEUM_WORKERS)")
    parser.add_argument("--pool", type=int, default=20, help="IEUM_DB_POOL_MAX per process")
    parser.add_argument("--warmup", type=int, default=5, help="scans per collector first")
    parser.add_argument(
        "--upload-batch", type=int, default=50, help="scans an uploadScans carries (0: none)"
    )
    parser.add_argument("--profile", metavar="FILE", help="one hub process under cProfile")
    args = parser.parse_args()
    if not 0 <= args.qr_share <= 1:
        parser.error("--qr-share is 0 to 1")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the hub on the way out
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
