"""Payments end to end: terminals collecting bills through the sandbox gateway, and the
ledger's postings against bare INSERTs of the same rows, in one run.

    .venv/bin/python bench/payments.py [--payments 2000] [--terminals 20] [--latency-ms 20]
        [--workers 2] [--pool 40] [--postings 20000] [--pace SECONDS]

Starts embedded PostgreSQL and broker (or uses IEUM_DATABASE_URL / IEUM_KAFKA_BOOTSTRAP)
with a fresh database, dropped at the end; the tax system's and the gateway's sandboxes in
a process of their own (they stand for systems elsewhere); and the hub as production runs
it, `ieum serve --no-demo` with IEUM_WORKERS processes and the payments worker inside
(recovery, receipt notices, outbox relay), its adapters pointed at the sandboxes. Each
terminal is a phone enrolled by a supervisor and signed in with private_key_jwt, looping
over bills of its own as at the counter: collectBill → the card read at the gateway (the
phone's SDK, not the hub) → confirmPayment. The gateway answers every confirm after a
fixed latency (a fault plan) and sends its webhook to the hub as it would; the load
client is a lean keep-alive one (bench/harness.py): it shares the hub's cores. The bills
are issued to the tax system at once before the run, and the terminals start once the
hub's worker has read them from its feed (a bill.created event each), as it reads a
city's bills through the day.

By default the terminals run closed loop, each starting its next payment as soon as the
last one is done: the hub is saturated, and each payment's latency is mostly its wait
behind the others' (about terminals / rate). With --pace S each terminal starts a payment
every S seconds (the next one at once when one took longer), their starts spread over S,
as officials at counters do: terminals / S payments/s offered, and the latencies are the
hub's at that rate, not at saturation.

Per payment: end to end (collect + card + confirm, what the official waits at the
counter), and the hub's overhead: collect + confirm minus the injected gateway latency.
The overhead still holds the sandboxes' own work for the hub's two outside calls (a bill
lookup, a confirm), about a millisecond each on loopback, and the loopback HTTP itself.
Then the CPU each part spent per payment (hub processes, PostgreSQL, sandboxes, load
client; from /proc, so on Linux with PostgreSQL on this machine), whose sum bounds the
rate the machine's cores can reach. The hub's webhook handling, receipt notices and
outbox relay run during the run as in production, and count in its CPU.

The ledger part books payment postings through `ledger.post_many` in transactions of 100
(the balance trigger runs at each commit) and the same rows, in the same transactions,
as two bare multi-row INSERTs into copies of the tables with their indexes and checks but
no trigger and no foreign key. The copies are ordinary tables: temporary ones write no
WAL, which would flatter the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import orjson
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from harness import (
    Connections,
    CpuClock,
    fresh_database,
    hub,
    quantiles,
    sandboxes,
    servers,
)
from joserfc.jwk import ECKey

from adapters.tosspayments import sandbox as gateway_sandbox
from auth import clients
from hub.bootstrap import prepare_database
from hub.core.settings import Settings
from hub.domains import installed
from resolvers.payments import ledger
from schema.payments.upstreams import WEBHOOK_PATH

installed()  # the domains' settings sections and scopes, as `ieum` loads them

DISTRICT = "11110"
COLLECT = """mutation($e: String!, $k: String!) {
  collectBill(epayNo: $e, idempotencyKey: $k) { id orderId amount status payerName }
}"""
ENROLL = "mutation($i: EnrollTerminalInput!) { enrollTerminal(input: $i) { id } }"
CONFIRM = """mutation($o: String!, $p: String!, $a: Int!, $k: String!) {
  confirmPayment(orderId: $o, paymentKey: $p, amount: $a, idempotencyKey: $k) {
    status failureCode
    receipt { number approvalNo cardNumber amount items { name amount } }
  }
}"""
SANDBOXES = ("localtax", "tosspayments")
ANSWER_SECONDS = 30  # a hung request fails the run instead of stalling it


@dataclass(frozen=True)
class Sample:
    collect: float
    card: float
    confirm: float


async def run(args: argparse.Namespace) -> None:
    settings = Settings.from_env()
    with servers(settings) as (server_url, bootstrap):
        async with fresh_database(server_url, "payments") as url:
            await prepare_database(url, settings)
            with (
                sandboxes(SANDBOXES) as (urls, sandbox_pid),
                hub(url, bootstrap, urls, hub_environment(args)) as (base, hub_pid),
            ):
                await payments(args, url, base, urls, {"hub": hub_pid, "sandboxes": sandbox_pid})
            await ledger_rates(url, args.postings, args.batch)


def hub_environment(args: argparse.Namespace) -> dict[str, str]:
    return {
        "IEUM_WORKERS": str(args.workers),
        "IEUM_DB_POOL_MAX": str(args.pool),
        "IEUM_PAYMENTS_SANDBOX": "false",
    }


# Terminals at the counter


async def payments(
    args: argparse.Namespace, url: str, base: str, urls: dict[str, str], pids: dict[str, int]
) -> None:
    counters, bills = await counters_with_bills(args, url, base, urls)
    await bills_announced(url, [epay_no for own in bills for epay_no in own])
    await asyncio.gather(
        *(c.run(b[: args.warmup], 0, 0) for c, b in zip(counters, bills, strict=True))
    )
    for counter in counters:
        counter.samples.clear()
    measured, left = [], args.payments
    for own in bills:  # exactly --payments in all
        measured.append(own[args.warmup :][:left])
        left -= len(measured[-1])
    clock = await CpuClock.start(url, pids)
    started = time.perf_counter()
    await asyncio.gather(
        *(
            c.run(b, args.pace, args.pace * i / len(counters))
            for i, (c, b) in enumerate(zip(counters, measured, strict=True))
        )
    )
    elapsed = time.perf_counter() - started
    cpu = await clock.stop()
    for counter in counters:
        await counter.close()
    samples = [sample for counter in counters for sample in counter.samples]
    pace = (
        f"each starting a payment every {args.pace:g} s ({args.terminals / args.pace:.0f}"
        " payments/s offered)"
        if args.pace
        else "closed loop"
    )
    print(
        f"{args.terminals} terminals, {pace}; {args.workers} hub processes (IEUM_WORKERS) with"
        f" IEUM_DB_POOL_MAX={args.pool} each, gateway confirm latency {args.latency_ms:g} ms,"
        f" {args.warmup} warm-up payments per terminal"
    )
    print(
        f"payments: {len(samples)} confirmed, {sum(c.failed for c in counters)} not,"
        f" in {elapsed:.2f} s: {len(samples) / elapsed:.0f} payments/s"
    )
    latency = args.latency_ms / 1000
    quantiles(
        "end to end (collect+card+confirm)", [s.collect + s.card + s.confirm for s in samples]
    )
    quantiles("  collectBill", [s.collect for s in samples])
    quantiles("  card read at the gateway", [s.card for s in samples])
    quantiles("  confirmPayment", [s.confirm for s in samples])
    quantiles(
        "hub overhead (collect+confirm-latency)", [s.collect + s.confirm - latency for s in samples]
    )
    if cpu:
        spent = {name: seconds / len(samples) for name, seconds in cpu.items()}
        total = sum(spent.values())
        cores = os.cpu_count() or 1
        print(
            "CPU per payment: "
            + ", ".join(f"{name} {seconds * 1000:.1f} ms" for name, seconds in spent.items())
            + f"; {total * 1000:.1f} ms in all: {cores} cores make at most"
            f" {cores / total:.0f} payments/s"
        )
    await after_the_run(url, len(samples) + args.warmup * args.terminals)


async def counters_with_bills(
    args: argparse.Namespace, url: str, base: str, urls: dict[str, str]
) -> tuple[list[Counter], list[list[str]]]:
    """The gateway set up (webhooks to the hub, the confirm's latency), the bills in the
    tax system, and the terminals enrolled: a counter per terminal with bills of its own."""
    gateway_url, tax_url = urls["tosspayments"], urls["localtax"]
    each = args.warmup + -(-args.payments // args.terminals)
    async with httpx.AsyncClient(timeout=60) as http:
        await _ok(
            http.post(gateway_url + "/_sandbox/config", json={"webhookUrl": base + WEBHOOK_PATH})
        )
        plan = {"latency_seconds": args.latency_ms / 1000, "path": "/v1/payments/confirm"}
        await _ok(http.post(gateway_url + "/_faults", json=plan))
        added = await _ok(
            http.post(
                tax_url + "/_sandbox/bills",
                json={"bills": [{"district_code": DISTRICT}] * (each * args.terminals)},
            )
        )
        tokens = await enroll(http, url, base, args.terminals)
    bills: list[str] = added["epay_nos"]
    card_auth = {"Authorization": httpx.BasicAuth(gateway_sandbox.SECRET_KEY, "")._auth_header}
    return (
        [Counter(base, gateway_url, token, card_auth) for token in tokens],
        [bills[i * each : (i + 1) * each] for i in range(args.terminals)],
    )


async def bills_announced(url: str, epay_nos: list[str]) -> None:
    """Wait until the hub's worker has read the run's bills from the tax system's feed
    (a bill.created event each): issued all at once here, where a city issues them over
    days, their announcements are not part of a payment's cost."""
    conn = await asyncpg.connect(url)
    try:
        async with asyncio.timeout(120):
            while True:
                announced = await conn.fetchval(
                    "SELECT count(*) FROM payment_outbox"
                    " WHERE event_type = 'bill.created' AND key = ANY($1::text[])",
                    epay_nos,
                )
                if announced == len(epay_nos):
                    return
                await asyncio.sleep(0.5)
    finally:
        await conn.close()


class Counter:
    """One terminal: its connection to the hub and its card reader's to the gateway."""

    def __init__(self, base: str, gateway_url: str, token: str, card_auth: dict[str, str]) -> None:
        self.hub = Connections(base, {"Authorization": f"Bearer {token}"})
        self.reader = Connections(gateway_url, card_auth)
        self.samples: list[Sample] = []
        self.failed = 0

    async def run(self, bills: list[str], pace: float, offset: float) -> None:
        """Pay `bills` one after another; with `pace`, one every `pace` seconds from
        `offset` on (none waits when the last one took longer)."""
        due = time.perf_counter() + offset
        for epay_no in bills:
            await asyncio.sleep(due - time.perf_counter())
            due += pace
            began = time.perf_counter()
            collected = await self.gql(COLLECT, {"e": epay_no, "k": str(uuid.uuid4())})
            read = time.perf_counter()
            card = {
                "orderId": collected["orderId"],
                "amount": collected["amount"],
                "orderName": "지방세",
            }
            async with asyncio.timeout(ANSWER_SECONDS):
                status, body = await self.reader.post(
                    "/v1/sandbox/card-present", orjson.dumps(card)
                )
            if status != 200:
                raise RuntimeError(f"card-present answered {status}: {body!r}")
            payment_key = orjson.loads(body)["paymentKey"]
            confirming = time.perf_counter()
            confirmed = await self.gql(
                CONFIRM,
                {
                    "o": collected["orderId"],
                    "p": payment_key,
                    "a": collected["amount"],
                    "k": str(uuid.uuid4()),
                },
            )
            done = time.perf_counter()
            if confirmed["status"] != "CONFIRMED":
                self.failed += 1
                continue
            self.samples.append(Sample(read - began, confirming - read, done - confirming))

    async def gql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        async with asyncio.timeout(ANSWER_SECONDS):
            status, body = await self.hub.post(
                "/graphql", orjson.dumps({"query": query, "variables": variables})
            )
        answer = orjson.loads(body)
        if status != 200 or answer.get("errors"):
            raise RuntimeError(f"the hub answered {status}: {answer}")
        data: dict[str, Any] = next(iter(answer["data"].values()))
        return data

    async def close(self) -> None:
        await self.hub.close()
        await self.reader.close()


async def enroll(http: httpx.AsyncClient, url: str, base: str, count: int) -> list[str]:
    """Phones enrolled by a supervisor through GraphQL, each signed in with its own key:
    their access tokens."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    try:
        supervisor = await clients.create(
            pool, name="bench supervisor", scope_names="payments:supervise"
        )
    finally:
        await pool.close()
    token = await _ok(
        http.post(
            base + "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(supervisor.client_id, supervisor.client_secret or ""),
        )
    )
    tokens = []
    for _ in range(count):
        key = ECKey.generate_key("P-256", parameters={"kid": uuid.uuid4().hex, "alg": "ES256"})
        enrolled = await _ok(
            http.post(
                base + "/graphql",
                headers={"Authorization": f"Bearer {token['access_token']}"},
                json={
                    "query": ENROLL,
                    "variables": {
                        "i": {
                            "districtCode": DISTRICT,
                            "department": "세무과",
                            "official": "김공무",
                            "dailyLimit": 2_000_000_000,  # GraphQL Int: 32 bits
                            "jwks": {"keys": [key.as_dict(private=False)]},
                        }
                    },
                },
            )
        )
        client_id = enrolled["data"]["enrollTerminal"]["id"]
        tokens.append(await asyncio.to_thread(_sign_in, base, client_id, key))
    return tokens


def _sign_in(base: str, client_id: str, key: ECKey) -> str:
    """A phone's sign-in: client credentials with a JWT signed by its key."""
    token_url = f"{base}/oauth/token"
    auth = PrivateKeyJWT(token_url, alg="ES256")
    with OAuth2Session(client_id, key, token_endpoint_auth_method=auth) as session:
        token = session.fetch_token(token_url, grant_type="client_credentials")
    return str(token["access_token"])


async def after_the_run(url: str, expected: int) -> None:
    """What the run left: payments by status, the ledger sound, notices the tax system
    took (the worker sends them every half second, so the last ones may still be due)."""
    conn = await asyncpg.connect(url)
    try:
        statuses = await conn.fetch("SELECT status, count(*) FROM payments GROUP BY status")
        postings = await conn.fetchval(
            "SELECT count(*) FROM ledger_transactions WHERE kind = 'payment'"
        )
        wrong = await ledger.unbalanced_transactions(conn)
        notices = await conn.fetch(
            "SELECT status, count(*) FROM payment_tax_notices GROUP BY status"
        )
    finally:
        await conn.close()
    print(
        f"after: payments {dict(statuses)} of {expected};"
        f" {postings} payment postings, {wrong} unbalanced; notices {dict(notices)}"
    )


# The ledger against bare INSERTs


BARE_TRANSACTIONS = """
INSERT INTO bench_ledger_transactions (kind, reference, payment_id, memo)
SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[])
RETURNING transaction_id
"""
BARE_ENTRIES = """
INSERT INTO bench_ledger_entries (transaction_id, account, debit, credit)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[])
"""


async def ledger_rates(url: str, count: int, batch: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "CREATE TABLE bench_ledger_transactions (LIKE ledger_transactions INCLUDING ALL);"
            "CREATE TABLE bench_ledger_entries (LIKE ledger_entries INCLUDING ALL)"
        )
        booked = _postings(count)
        started = time.perf_counter()
        for first in range(0, count, batch):
            async with conn.transaction():
                await ledger.post_many(conn, booked[first : first + batch])
        ledger_rate = count / (time.perf_counter() - started)

        bare = _postings(count)
        started = time.perf_counter()
        for first in range(0, count, batch):
            await _bare(conn, bare[first : first + batch])
        bare_rate = count / (time.perf_counter() - started)
        rows = await conn.fetchval(
            "SELECT (SELECT count(*) FROM bench_ledger_transactions)"
            " + (SELECT count(*) FROM bench_ledger_entries)"
        )
        assert rows == count * 3, rows
    finally:
        await conn.close()
    print(f"ledger: {count} payment postings (1 transaction + 2 entries each), {batch} a commit")
    print(f"  post_many, balance trigger: {ledger_rate:9.0f} postings/s")
    print(f"  bare INSERT, same rows:     {bare_rate:9.0f} postings/s")
    print(f"  ratio ledger / bare:        {ledger_rate / bare_rate:9.3f}")


def _postings(count: int) -> list[ledger.Posting]:
    return [
        ledger.Posting(
            kind="payment",
            reference=f"bench:{uuid.uuid4()}",
            lines=(
                ledger.Line(ledger.GATEWAY_RECEIVABLE, debit=40_000 + i % 1000),
                ledger.Line(ledger.revenue(1, DISTRICT), credit=40_000 + i % 1000),
            ),
        )
        for i in range(count)
    ]


async def _bare(conn: asyncpg.Connection, postings: list[ledger.Posting]) -> None:
    async with conn.transaction():
        ids = await conn.fetch(
            BARE_TRANSACTIONS,
            [p.kind for p in postings],
            [p.reference for p in postings],
            [p.payment_id for p in postings],
            [p.memo for p in postings],
        )
        lines = [(row[0], line) for row, p in zip(ids, postings, strict=True) for line in p.lines]
        await conn.execute(
            BARE_ENTRIES,
            [tx for tx, _ in lines],
            [line.account for _, line in lines],
            [line.debit for _, line in lines],
            [line.credit for _, line in lines],
        )


# Helpers


async def _ok(request: Any) -> dict[str, Any]:
    response: httpx.Response = await request
    response.raise_for_status()
    return dict(response.json())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=2000, help="measured, in all")
    parser.add_argument("--terminals", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=20, help="the gateway's confirm")
    parser.add_argument("--warmup", type=int, default=5, help="payments per terminal first")
    parser.add_argument("--workers", type=int, default=2, help="hub processes (IEUM_WORKERS)")
    parser.add_argument("--pool", type=int, default=40, help="IEUM_DB_POOL_MAX per process")
    parser.add_argument("--postings", type=int, default=20_000, help="ledger part")
    parser.add_argument("--batch", type=int, default=100, help="ledger postings a commit")
    parser.add_argument(
        "--pace",
        type=float,
        default=0,
        metavar="SECONDS",
        help="each terminal starts a payment this often (default 0: closed loop)",
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the hub on the way out
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
