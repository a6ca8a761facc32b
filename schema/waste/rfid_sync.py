"""Volumes in and out of the national RFID volume-rate system's format.

In: `import_month` reads a month of daily volumes of every mapped city (and of the
complexes followed one by one) from the RFID adapter and stores them, idempotently; the
`rfid-import` command runs it. Out: a district's daily totals of both sources (the hub's
collected pickups and the imported RFID volumes) written in the service's own format, as
open data at `GET /waste/open/rfid-format/{district}/{year}/{month}` and by `rfid-export`.
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import contextlib
import json
import logging
import sys
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from adapters import registry
from adapters.errors import AdapterError, BreakerOpen, UpstreamError
from adapters.kinds import Kind, RfidDailyVolume, RfidVolumes
from adapters.rfidwaste import wire
from adapters.sandbox.server import running
from hub.core import db
from hub.core.domain import Command
from hub.core.servers import Servers
from hub.core.settings import Settings
from resolvers.platform.districts import CODE, district_loader
from resolvers.waste import rfid
from resolvers.waste.settings import WasteSettings

log = logging.getLogger(__name__)
KST = ZoneInfo("Asia/Seoul")


@dataclass(frozen=True)
class ImportReport:
    year: int
    month: int
    cities: tuple[str, ...]  # the agency's codes imported
    days: int  # city-days received
    changed: int  # rows added or revised (0 when the month was imported before, unchanged)
    unmapped: tuple[str, ...]  # cities the agency lists that no district is mapped to
    renamed: tuple[str, ...]  # mapped cities the agency now names otherwise: not imported
    missing: tuple[str, ...]  # mapped cities the agency no longer lists


async def import_month(
    pool: asyncpg.Pool, connection: RfidVolumes, year: int, month: int
) -> ImportReport:
    """Fetch the whole month first, then store it in one statement: an upstream failure
    stores nothing, and running it again is harmless."""
    listed = {city.city_code: city for city in await connection.cities()}
    mapped = await rfid.mapped_cities(pool)
    chosen, renamed = [], []
    for code, city in mapped.items():
        agency = listed.get(code)
        if agency is None:
            continue
        name = f"{agency.sido} {agency.sigungu}"
        if name != city.agency_name:
            renamed.append(f"{code} {name} (mapped as {city.agency_name})")
        else:
            chosen.append(city)
    calls = [
        connection.daily(city.city_code, year, month, apt_code)
        for city in chosen
        for apt_code in ("", *city.apartments)
    ]
    answers = await asyncio.gather(*calls, return_exceptions=True)
    failures = [answer for answer in answers if isinstance(answer, BaseException)]
    if failures:
        # the upstream's own failure says more than the breaker it opened for the others
        raise next((e for e in failures if not isinstance(e, BreakerOpen)), failures[0])
    volumes: list[RfidDailyVolume] = [
        found for answer in answers if not isinstance(answer, BaseException) for found in answer
    ]
    changed = await rfid.upsert(pool, volumes)
    report = ImportReport(
        year=year,
        month=month,
        cities=tuple(city.city_code for city in chosen),
        days=sum(1 for found in volumes if not found.apt_code),
        changed=changed,
        unmapped=tuple(
            f"{code} {city.sido} {city.sigungu}"
            for code, city in sorted(listed.items())
            if code not in mapped
        ),
        renamed=tuple(renamed),
        missing=tuple(code for code in mapped if code not in listed),
    )
    log.info(
        "waste.rfid.imported month=%04d-%02d cities=%d days=%d changed=%d",
        year,
        month,
        len(report.cities),
        report.days,
        report.changed,
    )
    return report


async def rfid_format(
    pool: asyncpg.Pool,
    district_code: str,
    year: int,
    month: int,
    min_businesses: int | None = None,
) -> list[dict[str, Any]] | None:
    """A district's days of a month as the service's items (None: no such district). With
    `min_businesses`, as open data: a day's hub collections count only when that many
    businesses or more make them (`DayTotal.opened`)."""
    district = await district_loader(pool).load(district_code)
    if district is None:
        return None
    first = date(year, month, 1)
    last = first.replace(day=calendar.monthrange(year, month)[1])
    totals = await rfid.daily_totals(pool, district.code, first, last)
    if min_businesses is not None:
        totals = [t for t in (each.opened(min_businesses) for each in totals) if t is not None]
    return [
        wire.day_item(t.day, district.province, district.name, t.quantity_kg, t.disposals)
        for t in totals
    ]


async def open_rfid_format(request: Request) -> Response:
    """Open data: no token (days of too few businesses as `rfid_format` leaves them).
    Paged like the service (`page`, `rowNum`; all rows when no
    rowNum is given), so a client written for it reads this as it reads the service."""
    district = request.path_params["district"]
    year, month = request.path_params["year"], request.path_params["month"]
    if not CODE.match(district) or not 1000 <= year <= 9999 or not 1 <= month <= 12:
        return PlainTextResponse("use /{5-digit district}/{YYYY}/{month 1-12}", status_code=400)
    try:
        number = int(request.query_params.get("page", "1"))
        rows = int(request.query_params.get("rowNum", "0")) or None
    except ValueError:
        return PlainTextResponse("page and rowNum are whole numbers", status_code=400)
    if number < 1 or (rows is not None and not 1 <= rows <= wire.MAX_ROWS):
        return PlainTextResponse(f"page from 1, rowNum from 1 to {wire.MAX_ROWS}", 400)
    k = request.app.state.settings.section(WasteSettings).open_min_businesses
    items = await rfid_format(request.app.state.db, district, year, month, k)
    if items is None:
        return PlainTextResponse(f"no district {district}", status_code=404)
    return JSONResponse(wire.page(items, number, rows or max(len(items), 1)))


ROUTES = (
    Route(
        "/waste/open/rfid-format/{district}/{year:int}/{month:int}",
        open_rfid_format,
        methods=["GET"],
    ),
)


def _month(text: str) -> tuple[int, int]:
    try:
        moment = datetime.strptime(text, "%Y-%m")
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not YYYY-MM") from None
    return moment.year, moment.month


def _newest_month() -> tuple[int, int]:
    """The month of yesterday in Korea: the newest day the service has published."""
    yesterday = datetime.now(KST).date() - timedelta(days=1)
    return yesterday.year, yesterday.month


def _month_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--month", type=_month, default=None, help="YYYY-MM (default: the month of yesterday)"
    )


def _import_arguments(parser: argparse.ArgumentParser) -> None:
    _month_argument(parser)
    parser.add_argument(
        "--sandbox", action="store_true", help="import from the adapter's sandbox, run here"
    )


async def _import_from(
    settings: Settings, servers: Servers, adapter: registry.Adapter[Any], args: argparse.Namespace
) -> ImportReport:
    async with contextlib.AsyncExitStack() as stack:
        values: dict[str, str] = {}
        if args.sandbox:
            if adapter.sandbox is None:
                raise AdapterError(f"adapter {adapter.name!r} has no sandbox")
            values = (await stack.enter_async_context(running(adapter.sandbox))).settings()
        connection = adapter.connect(adapter.read_settings(**values))
        stack.push_async_callback(connection.aclose)
        if not isinstance(connection, RfidVolumes):
            raise AdapterError(f"adapter {adapter.name!r} is not of kind {Kind.RFID_VOLUMES}")
        pool = await db.create_pool(servers.database, settings)
        stack.push_async_callback(pool.close)
        return await import_month(pool, connection, *(args.month or _newest_month()))


def _import(settings: Settings, servers: Servers, args: argparse.Namespace) -> int:
    name = settings.section(WasteSettings).rfid_adapter
    try:
        adapter = registry.get(name)
        report = asyncio.run(_import_from(settings, servers, adapter, args))
    except AdapterError as exc:
        print(f"ieum: {exc}", file=sys.stderr)
        return 1
    except ValidationError as exc:
        problem = registry.describe_invalid(adapter, exc)
        print(f"ieum: {name} is not configured: {problem}", file=sys.stderr)
        return 1
    except UpstreamError as exc:
        print(f"ieum: nothing imported: {exc}", file=sys.stderr)
        return 1
    print(
        f"{report.year:04d}-{report.month:02d}: {report.days} city-days of "
        f"{len(report.cities)} cities ({', '.join(report.cities) or 'none'}), "
        f"{report.changed} rows added or revised"
    )
    for label, cities in (
        ("not mapped to a district", report.unmapped),
        ("renamed by the agency, not imported (check waste_rfid_cities)", report.renamed),
        ("mapped but no longer listed by the agency", report.missing),
    ):
        if cities:
            print(f"{label}: {'; '.join(cities)}")
    return 0


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--district", required=True, help="5-digit district code")
    _month_argument(parser)
    parser.add_argument("--out", type=Path, help="write the JSON here (default: stdout)")


def _export(settings: Settings, servers: Servers, args: argparse.Namespace) -> int:
    async def work() -> list[dict[str, Any]] | None:
        pool = await db.create_pool(servers.database, settings)
        try:
            return await rfid_format(pool, args.district, *(args.month or _newest_month()))
        finally:
            await pool.close()

    if not CODE.match(args.district):
        print(f"ieum: {args.district!r} is not a 5-digit district code", file=sys.stderr)
        return 1
    items = asyncio.run(work())
    if items is None:
        print(f"ieum: no district {args.district}", file=sys.stderr)
        return 1
    text = json.dumps(wire.page(items, 1, max(len(items), 1)), ensure_ascii=False)
    if args.out is None:
        print(text)
    else:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


IMPORT_COMMAND = Command(
    "rfid-import",
    "import a month of daily volumes from the national RFID volume-rate system",
    _import,
    _import_arguments,
)
EXPORT_COMMAND = Command(
    "rfid-export",
    "a district's daily totals (pickups and RFID) in the RFID service's JSON format",
    _export,
    _export_arguments,
)
COMMANDS = (IMPORT_COMMAND, EXPORT_COMMAND)
