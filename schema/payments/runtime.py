"""The payments domain's worker and commands.

`ieum worker payments` (and `ieum serve`, unless IEUM_PAYMENTS_IN_SERVE=false) runs five
loops: the recovery job (unknown payments and refunds resolved, abandoned requests
expired), receipt notices to the tax system, the tax system's feed of issued bills
(bill.created events), the outbox relay to Kafka, and the daily reconciliation of
yesterday once the gateway's settlement file is out (01:00 KST).
Several workers may run at once: every loop claims its rows with SKIP LOCKED or
conditional updates.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from pathlib import Path

import asyncpg

from adapters.errors import UpstreamError
from hub.core import db
from hub.core.domain import Command, Worker
from hub.core.servers import Servers
from hub.core.settings import Settings
from resolvers.payments import outbox, reconciliation, store, terminals
from resolvers.payments.settings import PaymentsSettings
from schema.payments import bill_feed, flow, upstreams
from schema.payments.state import POOL_SETTINGS

log = logging.getLogger(__name__)
NOTICE_SECONDS = 0.5
RECONCILE_HOUR = 1  # KST: the settlement file of yesterday is out by then
OUTBOX_KEEP = timedelta(days=7)


async def _every(
    seconds: float, stop: asyncio.Event, work: Callable[[], Awaitable[object]], name: str
) -> None:
    """Run `work` every `seconds` until `stop`; a failed round is logged and retried."""
    while not stop.is_set():
        try:
            await work()
        except (
            UpstreamError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            OSError,
            TimeoutError,
        ) as exc:
            log.warning("payments.%s_failed error=%r", name, exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)


async def run_worker(settings: Settings, servers: Servers, stop: asyncio.Event) -> None:
    section = settings.section(PaymentsSettings)
    pool = await db.create_pool(servers.database, settings, POOL_SETTINGS)
    try:
        async with upstreams.shared(section, settings.issuer) as shared:
            hub = flow.Payments(pool, shared, section)
            feed = bill_feed.BillFeed(pool, shared, section.tax_adapter)
            loops = [
                _every(section.recovery_seconds, stop, lambda: flow.recover(hub), "recovery"),
                _every(NOTICE_SECONDS, stop, lambda: _notices(hub), "notices"),
                _every(3600, stop, lambda: _daily(hub), "reconciliation"),
                _every(bill_feed.FEED_SECONDS, stop, feed.read, "bill_feed"),
            ]
            if servers.kafka_bootstrap is not None:
                relay = outbox.Relay(
                    servers.database, settings, servers.kafka_bootstrap, section.events_topic
                )
                loops.append(relay.run(stop))
            await asyncio.gather(*loops)
    finally:
        await pool.close()


async def _notices(hub: flow.Payments) -> None:
    """Deliver notices until none is due (a backlog drains at once, not one batch a tick)."""
    while await flow.deliver_notices(hub) == flow.NOTICES_AT_ONCE:
        pass


async def _daily(hub: flow.Payments) -> None:
    now = datetime.now(store.KST)
    if now.hour < RECONCILE_HOUR:
        return
    yesterday = now.date() - timedelta(days=1)
    if await reconciliation.stored_report(hub.pool, yesterday) is None:
        await reconcile_day(hub, yesterday)
    await outbox.prune(hub.pool, OUTBOX_KEEP)


async def reconcile_day(hub: flow.Payments, day: date) -> reconciliation.Report:
    gateway = await hub.upstreams.gateway()
    report = await reconciliation.reconcile(hub.pool, day, await gateway.settlements(day))
    log.info(
        "payments.reconciled day=%s matched=%d missing_in_hub=%d missing_at_gateway=%d"
        " amount_mismatch=%d",
        day,
        report.matched,
        report.missing_in_hub,
        report.missing_at_gateway,
        report.amount_mismatch,
    )
    return report


WORKER = Worker(
    name="payments",
    help="payment recovery, tax receipt notices, event outbox relay, daily reconciliation",
    run=run_worker,
    in_serve=lambda settings: settings.section(PaymentsSettings).in_serve,
)


# Commands


def _with_hub(
    settings: Settings, servers: Servers, work: Callable[[flow.Payments], Awaitable[int]]
) -> int:
    async def main() -> int:
        section = settings.section(PaymentsSettings)
        pool = await db.create_pool(servers.database, settings)
        try:
            async with upstreams.shared(section, settings.issuer) as shared:
                return await work(flow.Payments(pool, shared, section))
        finally:
            await pool.close()

    return asyncio.run(main())


def _reconcile(settings: Settings, servers: Servers, args: argparse.Namespace) -> int:
    day = args.date or (datetime.now(store.KST).date() - timedelta(days=1))

    async def work(hub: flow.Payments) -> int:
        report = await reconcile_day(hub, day)
        out = args.csv.open("w", encoding="utf-8") if args.csv else sys.stdout
        with contextlib.nullcontext(out) if out is sys.stdout else out:
            out.write(reconciliation.report_csv(report))
        return (
            0
            if report.missing_in_hub + report.missing_at_gateway + report.amount_mismatch == 0
            else 3
        )

    return _with_hub(settings, servers, work)


def _reconcile_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--date", type=date.fromisoformat, help="Korean date (default yesterday)")
    parser.add_argument("--csv", type=Path, help="write the report here (default stdout)")


def _enroll(settings: Settings, servers: Servers, args: argparse.Namespace) -> int:
    jwks = json.loads(args.jwks.read_text())
    limit = args.daily_limit or settings.section(PaymentsSettings).default_daily_limit

    async def work(hub: flow.Payments) -> int:
        terminal = await terminals.enroll(
            hub.pool,
            district_code=args.district,
            department=args.department,
            official=args.official,
            daily_limit=limit,
            jwks=jwks,
            enrolled_by="cli",
        )
        print(
            json.dumps(
                {
                    "terminal_id": terminal.terminal_id,
                    "district": terminal.district_code,
                    "daily_limit": terminal.daily_limit,
                },
                ensure_ascii=False,
            )
        )
        return 0

    return _with_hub(settings, servers, work)


def _enroll_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--district", required=True, help="5-digit district code")
    parser.add_argument("--department", required=True)
    parser.add_argument("--official", required=True, help="the official the phone is bound to")
    parser.add_argument("--jwks", type=Path, required=True, help="the phone's public JWK set")
    parser.add_argument("--daily-limit", type=int, help="won per day")


def _disable(settings: Settings, servers: Servers, args: argparse.Namespace) -> int:
    async def work(hub: flow.Payments) -> int:
        terminal = await terminals.disable(hub.pool, args.terminal_id, args.reason)
        if terminal is None:
            print(f"ieum: no terminal {args.terminal_id!r}", file=sys.stderr)
            return 1
        print(f"disabled terminal {terminal.terminal_id}; its tokens are revoked")
        return 0

    return _with_hub(settings, servers, work)


def _disable_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("terminal_id")
    parser.add_argument("--reason", required=True, help="e.g. 'phone lost'")


def _recover(settings: Settings, servers: Servers, args: argparse.Namespace) -> int:
    async def work(hub: flow.Payments) -> int:
        print(json.dumps(await flow.recover(hub)))
        return 0

    return _with_hub(settings, servers, work)


COMMANDS = (
    Command(
        "reconcile",
        "reconcile a day against the gateway's settlement file (CSV out)",
        _reconcile,
        _reconcile_arguments,
    ),
    Command("enroll", "enroll an official's phone as a terminal", _enroll, _enroll_arguments),
    Command("disable", "disable a terminal at once (lost phone)", _disable, _disable_arguments),
    Command("recover", "resolve unknown payments and refunds once", _recover),
)
