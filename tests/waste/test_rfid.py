"""The national RFID volume-rate system: the rfidwaste adapter against its sandbox over real
HTTP (paging, units, faults), the idempotent import into PostgreSQL, and the export of a
district's daily totals in the service's own format."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.errors import (
    MalformedResponse,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
    UpstreamTimeout,
)
from adapters.kinds import RfidDailyVolume, RfidVolumes
from adapters.rfidwaste import adapter, parse, records, wire
from adapters.rfidwaste.sandbox import SANDBOX, create_app
from adapters.sandbox.server import RunningSandbox, Sandbox, running
from hub.core import db
from hub.core.servers import Servers
from hub.core.settings import Settings
from hub.serve import serving
from resolvers.waste import rfid
from schema.waste import rfid_sync
from tests.adapters.helpers import adapters_check, sandbox_process

WIRE_DOC = Path(__file__).parents[2] / "docs" / "upstreams" / "rfidwaste.md"
BUDGET = 1.0
TODAY = date(2026, 5, 12)  # the sandbox's today in the documented and dated tests
FIXED = dataclasses.replace(SANDBOX, app=lambda: create_app(lambda: TODAY))
FEBRUARY = (2024, 2)  # 29 days
KST_OFFSET = timedelta(hours=9)


@pytest.fixture
async def served() -> AsyncIterator[RunningSandbox]:
    async with running(FIXED) as sandbox:
        yield sandbox


def connect(served: RunningSandbox, **settings: Any) -> RfidVolumes:
    values = served.settings() | {"timeout_seconds": BUDGET} | settings
    connection = adapter.connect(adapter.read_settings(**values))
    assert isinstance(connection, RfidVolumes)
    return connection


@pytest.fixture
async def volumes(served: RunningSandbox) -> AsyncIterator[RfidVolumes]:
    connection = connect(served)
    yield connection
    await connection.aclose()


async def served_count(sandbox: RunningSandbox) -> int:
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        count: int = (await http.get("/_faults")).json()["served"]
    return count


def seeded(city_code: str, day: date, apt_code: str = "") -> records.Weighed:
    city = records.BY_CODE[city_code]
    if not apt_code:
        return records.city_day(city, day)
    (complex_,) = [c for c in city.complexes if c.apt_code == apt_code]
    return records.weighed(complex_, day)


def days_of(year: int, month: int) -> list[date]:
    first = date(year, month, 1)
    return [
        first + timedelta(days=n) for n in range(31) if (first + timedelta(days=n)).month == month
    ]


# The adapter against the sandbox


async def test_cities_are_listed_with_the_agencys_codes_and_names(volumes: RfidVolumes) -> None:
    cities = await volumes.cities()
    assert [(c.city_code, c.sido, c.sigungu) for c in cities] == [
        ("W01", "서울특별시", "중구"),
        ("W07", "서울특별시", "중랑구"),
        ("W2B", "부산광역시", "해운대구"),
        ("W3C", "대구광역시", "수성구"),
    ]


async def test_a_month_is_read_page_by_page_until_the_list_is_null(
    served: RunningSandbox,
) -> None:
    connection = connect(served, page_rows=7)
    before = await served_count(served)
    try:
        days = await connection.daily("W07", *FEBRUARY)
    finally:
        await connection.aclose()
    # 29 days: four full pages of 7, one of 1, then the null page that ends the list
    assert await served_count(served) - before == 6
    assert [found.day for found in days] == days_of(*FEBRUARY)
    assert all(found.city_code == "W07" and found.apt_code == "" for found in days)


async def test_a_cities_list_longer_than_a_page_is_read_whole(served: RunningSandbox) -> None:
    connection = connect(served, page_rows=1)
    try:
        assert len(await connection.cities()) == len(records.CITIES)
    finally:
        await connection.aclose()


async def test_quantities_are_grams_converted_to_exact_kilograms(
    served: RunningSandbox, volumes: RfidVolumes
) -> None:
    params = {
        "ServiceKey": "sandbox-rfidwaste-key",
        "type": "json",
        "disYear": "2024",
        "disMonth": "02",
        "cityCode": "W01",
        "rowNum": "31",
    }
    async with httpx.AsyncClient(base_url=served.url) as http:
        raw = (await http.get(wire.BASE_PATH + wire.CITY_DAYS, params=params)).json()
    on_wire = {item["disDate"]: item for item in raw["data"]["list"]}
    for found in await volumes.daily("W01", *FEBRUARY):
        item = on_wire[found.day.strftime("%Y%m%d")]
        assert found.quantity_kg == Decimal(item["disQuantity"]) / 1000
        assert found.quantity_kg == Decimal(seeded("W01", found.day).grams) / 1000
        assert found.disposals == item["disCount"] == seeded("W01", found.day).disposals
    assert found.quantity_kg.as_tuple().exponent == -3  # grams, kept to the gram


async def test_a_complexs_days_are_its_own_and_sum_to_its_citys(volumes: RfidVolumes) -> None:
    city = await volumes.daily("W07", *FEBRUARY)
    complexes = [await volumes.daily("W07", *FEBRUARY, apt_code=c) for c in ("W07001", "W07002")]
    complexes.append(await volumes.daily("W07", *FEBRUARY, apt_code="W07003"))
    assert complexes[0][3].apt_code == "W07001"
    assert (
        complexes[0][3].quantity_kg
        == Decimal(seeded("W07", date(2024, 2, 4), "W07001").grams) / 1000
    )
    for n, day in enumerate(city):
        assert day.quantity_kg == sum(c[n].quantity_kg for c in complexes)
        assert day.disposals == sum(c[n].disposals for c in complexes)


async def test_a_month_without_data_is_empty_and_this_month_ends_yesterday(
    volumes: RfidVolumes,
) -> None:
    assert await volumes.daily("W01", 2026, 6) == []
    assert await volumes.daily("W01", 2013, 5) == []  # before volume-based fees
    assert await volumes.daily("W99", *FEBRUARY) == []  # a city the service does not have
    this_month = await volumes.daily("W01", TODAY.year, TODAY.month)
    assert [found.day for found in this_month] == [date(2026, 5, d) for d in range(1, 12)]


async def test_an_unregistered_key_is_rejected_with_the_gateways_reason(
    served: RunningSandbox,
) -> None:
    connection = connect(served, service_key="not-a-key")
    try:
        with pytest.raises(UpstreamRejected, match="SERVICE_KEY_IS_NOT_REGISTERED_ERROR"):
            await connection.daily("W01", *FEBRUARY)
        with pytest.raises(UpstreamRejected, match=r"rfidwaste.*code 30"):
            await connection.health()
    finally:
        await connection.aclose()


async def test_an_exhausted_daily_quota_is_rate_limited(
    served: RunningSandbox, volumes: RfidVolumes
) -> None:
    async with httpx.AsyncClient(base_url=served.url) as http:
        (await http.post("/_sandbox/quota", json={"left": 0})).raise_for_status()
    with pytest.raises(UpstreamRateLimited, match="LIMITED_NUMBER_OF_SERVICE_REQUESTS"):
        await volumes.daily("W01", *FEBRUARY)
    async with httpx.AsyncClient(base_url=served.url) as http:
        (await http.delete("/_sandbox/quota")).raise_for_status()
    assert len(await volumes.daily("W01", *FEBRUARY)) == 29


@pytest.mark.parametrize(
    ("plan", "error"),
    [
        ({"error": "5xx", "status": 502}, UpstreamServerError),
        ({"error": "hang"}, UpstreamTimeout),
        ({"error": "malformed"}, MalformedResponse),
    ],
)
async def test_faults_become_upstream_errors(
    served: RunningSandbox, volumes: RfidVolumes, plan: dict[str, Any], error: type[Exception]
) -> None:
    await served.inject(**plan)
    with pytest.raises(error, match="rfidwaste"):
        await volumes.daily("W01", *FEBRUARY)
    await served.clear()
    assert len(await volumes.daily("W01", *FEBRUARY)) == 29


async def test_one_5xx_or_429_in_a_paged_read_is_retried(served: RunningSandbox) -> None:
    connection = connect(served, page_rows=10)
    try:
        await served.inject(error="5xx", count=1, path=wire.CITY_DAYS)
        first = await connection.daily("W01", *FEBRUARY)
        await served.inject(error="rate_limited", retry_after=0, count=1)
        assert await connection.daily("W01", *FEBRUARY) == first
    finally:
        await connection.aclose()
    assert len(first) == 29


def test_ieum_sandbox_rfidwaste_serves_what_the_adapter_checks() -> None:
    with sandbox_process("rfidwaste") as (url, settings):
        assert settings == {
            "IEUM_RFIDWASTE_BASE_URL": url + "/B552584/RfidFoodWasteServiceNew",
            "IEUM_RFIDWASTE_SERVICE_KEY": "sandbox-rfidwaste-key",
        }
        healthy = adapters_check("rfidwaste", settings)
        assert healthy.returncode == 0, healthy.stderr
        assert healthy.stdout.strip() == "rfidwaste: healthy"
        refused = adapters_check(
            "rfidwaste", settings | {"IEUM_RFIDWASTE_SERVICE_KEY": "encoded%2Bkey"}
        )
        assert refused.returncode == 1
        assert "SERVICE_KEY_IS_NOT_REGISTERED_ERROR" in refused.stderr


EXCHANGE = re.compile(
    r"```http\n(?P<request>.*?)```\s*```(?P<kind>json|xml)\n(?P<answer>.*?)```", re.DOTALL
)


async def test_the_documented_exchanges_are_what_the_sandbox_answers() -> None:
    """docs/upstreams/rfidwaste.md, replayed in order against a sandbox of that day."""
    exchanges = list(EXCHANGE.finditer(WIRE_DOC.read_text()))
    assert len(exchanges) == 9
    async with running(FIXED) as served, httpx.AsyncClient(base_url=served.url) as http:
        for exchange in exchanges:
            request_line, _, body = exchange["request"].strip().partition("\n\n")
            method, path = request_line.split(" ")
            content = json.loads(body) if body else None
            response = await http.request(method, path, json=content)
            if exchange["kind"] == "xml":
                assert response.text == exchange["answer"].strip(), request_line
            else:
                assert response.json() == json.loads(exchange["answer"]), request_line
            gateway = "OpenAPI_ServiceResponse" in response.text
            assert response.status_code == (403 if gateway else 200), request_line


def ignoring_page() -> Starlette:
    """A service that answers the first page whatever page is asked."""

    async def same(request: Any) -> JSONResponse:
        item = wire.day_item(date(2024, 2, 1), "서울특별시", "중구", Decimal("1.5"), 3)
        return JSONResponse({"data": {"list": [item]}})

    return Starlette(routes=[Route(wire.BASE_PATH + wire.CITY_DAYS, same)])


async def test_a_service_that_ignores_page_is_malformed_not_an_endless_loop() -> None:
    broken = Sandbox("rfidwaste", "ignores page", ignoring_page, SANDBOX.configure)
    async with running(broken) as served:
        connection = connect(served)
        try:
            with pytest.raises(MalformedResponse, match=r"page 2 of \S+ repeats page 1"):
                await connection.daily("W01", *FEBRUARY)
        finally:
            await connection.aclose()


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        (
            '{"data":{"list":{"disDate":"2024-02-01","disQuantity":"1523.4","disCount":"7"}}}',
            200,
            RfidDailyVolume("W01", "", date(2024, 2, 1), Decimal("1.5234"), 7),
        ),
        ('{"data":{"list":null}}', 200, None),
        ('{"data":{}}', 200, None),
    ],
)
def test_strings_single_objects_and_null_lists_are_read(
    body: str, status: int, expected: RfidDailyVolume | None
) -> None:
    found = parse.items(httpx.Response(status, text=body))
    if expected is None:
        assert found == []
    else:
        assert [parse.volume(item, "W01", "", *FEBRUARY) for item in found] == [expected]


@pytest.mark.parametrize(
    ("body", "error", "match"),
    [
        (
            "<OpenAPI_ServiceResponse><cmmMsgHeader><errMsg>SERVICE ERROR</errMsg><returnAuthMsg>"
            "LIMITED_NUMBER_OF_SERVICE_REQUESTS_EXCEEDS_ERROR</returnAuthMsg><returnReasonCode>22"
            "</returnReasonCode></cmmMsgHeader></OpenAPI_ServiceResponse>",
            UpstreamRateLimited,
            "code 22",
        ),
        (
            '{"response":{"header":{"resultCode":"99","resultMsg":"UNKNOWN_ERROR"}}}',
            UpstreamServerError,
            "UNKNOWN_ERROR",
        ),
        (
            '{"data":{"list":[{"disDate":"20240301","disQuantity":1,"disCount":1}]}}',
            MalformedResponse,
            "outside 2024-02",
        ),
        (
            '{"data":{"list":[{"disDate":"20240201","disQuantity":-4,"disCount":1}]}}',
            MalformedResponse,
            "not a weight",
        ),
    ],
)
def test_gateway_errors_in_a_200_answer_and_odd_items_are_specific(
    body: str, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        for item in parse.items(httpx.Response(200, text=body)):
            parse.volume(item, "W01", "", *FEBRUARY)


# Import into PostgreSQL


@pytest.fixture(scope="module")
async def pool(migrated_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await db.create_pool(migrated_url, Settings.from_env())
    yield created
    await created.close()


@pytest.fixture
async def clean(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    await pool.execute("TRUNCATE waste_rfid_volumes")
    await pool.execute("DELETE FROM waste_pickups")
    yield pool


async def stored(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch("SELECT * FROM waste_rfid_volumes ORDER BY city_code, apt_code, day")
    return [dict(row) for row in rows]


async def test_importing_a_month_twice_stores_it_once(
    clean: asyncpg.Pool, volumes: RfidVolumes
) -> None:
    first = await rfid_sync.import_month(clean, volumes, *FEBRUARY)
    assert first.cities == ("W01", "W07", "W2B", "W3C")
    assert first.days == 4 * 29
    assert first.changed == (4 + 3) * 29  # the cities and the three complexes followed
    before = await stored(clean)
    again = await rfid_sync.import_month(clean, volumes, *FEBRUARY)
    assert again.changed == 0
    assert await stored(clean) == before  # imported_at too: nothing was rewritten
    w07 = [row for row in before if row["city_code"] == "W07" and row["apt_code"] == ""]
    assert {row["district_code"] for row in w07} == {"11260"}
    assert w07[0]["quantity_kg"] == seeded("W07", date(2024, 2, 1)).kg


async def test_a_revised_day_is_rewritten_and_only_that_day(
    clean: asyncpg.Pool, volumes: RfidVolumes
) -> None:
    await rfid_sync.import_month(clean, volumes, *FEBRUARY)
    await clean.execute(
        "UPDATE waste_rfid_volumes SET quantity_kg = 1, imported_at = now() - interval '1 day'"
        " WHERE city_code = 'W01' AND apt_code = '' AND day = '2024-02-10'"
    )
    report = await rfid_sync.import_month(clean, volumes, *FEBRUARY)
    assert report.changed == 1
    revised = await clean.fetchrow(
        "SELECT quantity_kg, imported_at > now() - interval '1 minute' AS fresh"
        " FROM waste_rfid_volumes WHERE city_code = 'W01' AND apt_code = '' AND day = '2024-02-10'"
    )
    assert revised["quantity_kg"] == seeded("W01", date(2024, 2, 10)).kg and revised["fresh"]


async def test_a_city_the_agency_renamed_is_not_imported(
    clean: asyncpg.Pool, volumes: RfidVolumes
) -> None:
    await clean.execute(
        "UPDATE waste_rfid_cities SET agency_name = '대구광역시 중구' WHERE city_code = 'W3C'"
    )
    try:
        report = await rfid_sync.import_month(clean, volumes, *FEBRUARY)
    finally:
        await clean.execute(
            "UPDATE waste_rfid_cities SET agency_name = '대구광역시 수성구' WHERE city_code = 'W3C'"
        )
    assert report.cities == ("W01", "W07", "W2B")
    assert report.renamed == ("W3C 대구광역시 수성구 (mapped as 대구광역시 중구)",)
    assert not [row for row in await stored(clean) if row["city_code"] == "W3C"]


async def test_an_upstream_failure_imports_nothing(
    clean: asyncpg.Pool, served: RunningSandbox, volumes: RfidVolumes
) -> None:
    await served.inject(error="5xx", path="getCityAptDateList")
    with pytest.raises(UpstreamError, match="rfidwaste"):
        await rfid_sync.import_month(clean, volumes, *FEBRUARY)
    assert await stored(clean) == []


# Export in the same format


@pytest.fixture(scope="module")
async def site(pool: asyncpg.Pool) -> dict[str, uuid.UUID]:
    """A restaurant in 중구 (11140) with a bin, and one in 중랑구 (11260)."""
    ids: dict[str, uuid.UUID] = {}
    generator = uuid.uuid4()
    await pool.execute(
        "INSERT INTO waste_generators (generator_id, business_no, name, representative, phone,"
        " owner_client) VALUES ($1, '1234567891', '이음식당', '김이음', '010-0000-0000', 'test')",
        generator,
    )
    for district in ("11140", "11260"):
        ids[f"site{district}"], ids[f"bin{district}"] = uuid.uuid4(), uuid.uuid4()
        await pool.execute(
            "INSERT INTO waste_sites (site_id, generator_id, name, address, lat, lng,"
            " district_code) VALUES ($1, $2, '본점', '서울', 37.56, 127.0, $3)",
            ids[f"site{district}"],
            generator,
            district,
        )
        await pool.execute(
            "INSERT INTO waste_bins (bin_id, site_id, volume_litres) VALUES ($1, $2, 120)",
            ids[f"bin{district}"],
            ids[f"site{district}"],
        )
    return ids


async def pickup(
    pool: asyncpg.Pool,
    site: dict[str, uuid.UUID],
    kst: datetime,
    weight: str | None,
    status: str = "collected",
    district: str = "11140",
) -> None:
    at = (kst - KST_OFFSET).replace(tzinfo=UTC)
    await pool.execute(
        "INSERT INTO waste_pickups (pickup_id, bin_id, site_id, district_code, status, basis,"
        " unit_price, quoted_amount, pickup_day, requested_by, collected_at, weight_kg)"
        " VALUES ($1, $2, $3, $4, $5, 'kg', 130, 3000, $6, 'test', $7, $8)",
        uuid.uuid4(),
        site[f"bin{district}"],
        site[f"site{district}"],
        district,
        status,
        kst.date(),
        at if status == "collected" else None,
        Decimal(weight) if weight is not None else None,
    )


@pytest.fixture
async def collections(
    clean: asyncpg.Pool, site: dict[str, uuid.UUID], volumes: RfidVolumes
) -> dict[date, tuple[Decimal, int]]:
    """February's pickups and RFID volumes in 중구; the hub's part of each day's total."""
    await rfid_sync.import_month(clean, volumes, *FEBRUARY)
    await pickup(clean, site, datetime(2024, 2, 5, 10, 0), "12.35")
    await pickup(clean, site, datetime(2024, 2, 5, 23, 59), "7.10")  # 14:59 UTC: still the 5th
    await pickup(clean, site, datetime(2024, 2, 6, 0, 5), "3.00")  # 15:05 UTC on the 5th
    await pickup(clean, site, datetime(2024, 2, 6, 9, 0), None)  # no scale on that truck
    await pickup(clean, site, datetime(2024, 2, 7, 9, 0), "50.00", status="cancelled")
    await pickup(clean, site, datetime(2024, 2, 7, 9, 0), "40.00", district="11260")
    await pickup(clean, site, datetime(2024, 3, 1, 0, 30), "9.99")  # March in Korea
    await pickup(clean, site, datetime(2024, 1, 31, 23, 30), "8.88")  # January in Korea
    return {date(2024, 2, 5): (Decimal("19.45"), 2), date(2024, 2, 6): (Decimal("3.00"), 2)}


def expected_items(hub: dict[date, tuple[Decimal, int]]) -> list[dict[str, Any]]:
    items = []
    for day in days_of(*FEBRUARY):
        rfid_day = seeded("W01", day)
        kg, pickups = hub.get(day, (Decimal(0), 0))
        grams = rfid_day.grams + kg * 1000
        items.append(
            {
                "disYear": "2024",
                "disMonth": "02",
                "disDay": str(day.isoweekday() % 7 + 1),
                "disDate": day.strftime("%Y%m%d"),
                "disDayCount": 1,
                "citySidoName": "서울특별시",
                "citySggName": "중구",
                "disQuantity": int(grams),
                "dayAverQuantity": int(grams),
                "disCount": rfid_day.disposals + pickups,
                "dayAverCount": rfid_day.disposals + pickups,
            }
        )
    return items


@pytest.fixture(scope="module")
async def open_url(pool: asyncpg.Pool) -> AsyncIterator[str]:
    """The export's routes on a real server, as the lead mounts them in the hub."""
    app = Starlette(routes=list(rfid_sync.ROUTES))
    app.state.db = pool
    # Every day shown, of the one business here: these tests check the format and its sums
    # (days of too few businesses withheld: tests/waste/test_collection.py).
    app.state.settings = Settings.from_env(open_min_businesses=1)
    async with serving(app) as url:
        yield url


async def test_the_export_is_the_services_format_with_both_sources_summed(
    collections: dict[date, tuple[Decimal, int]], open_url: str, served: RunningSandbox
) -> None:
    async with httpx.AsyncClient(base_url=open_url) as http:
        answer = (await http.get("/waste/open/rfid-format/11140/2024/2")).json()
    assert answer == {"data": {"list": expected_items(collections)}}
    # the fields are the service's own: the sandbox's items have exactly these
    async with httpx.AsyncClient(base_url=served.url) as http:
        params = {
            "ServiceKey": "sandbox-rfidwaste-key",
            "type": "json",
            "disYear": "2024",
            "disMonth": "02",
            "cityCode": "W01",
        }
        service = (await http.get(wire.BASE_PATH + wire.CITY_DAYS, params=params)).json()
    assert set(service["data"]["list"][0]) == set(answer["data"]["list"][0])


async def test_the_export_is_read_back_by_the_adapters_own_parser(
    collections: dict[date, tuple[Decimal, int]], open_url: str, clean: asyncpg.Pool
) -> None:
    async with httpx.AsyncClient(base_url=open_url) as http:
        response = await http.get("/waste/open/rfid-format/11140/2024/2")
    read = [parse.volume(item, "W01", "", *FEBRUARY) for item in parse.items(response)]
    totals = await rfid.daily_totals(clean, "11140", date(2024, 2, 1), date(2024, 2, 29))
    assert [(r.day, r.quantity_kg, r.disposals) for r in read] == [
        (t.day, t.quantity_kg, t.disposals) for t in totals
    ]
    assert totals[4].hub_kg == Decimal("19.45") and totals[4].hub_pickups == 2
    assert sum(t.hub_pickups for t in totals) == 4


async def test_the_export_pages_like_the_service(
    collections: dict[date, tuple[Decimal, int]], open_url: str
) -> None:
    path = "/waste/open/rfid-format/11140/2024/2"
    async with httpx.AsyncClient(base_url=open_url) as http:
        second = (await http.get(path, params={"page": 2, "rowNum": 20})).json()
        past = (await http.get(path, params={"page": 3, "rowNum": 20})).json()
        empty = (await http.get("/waste/open/rfid-format/11140/2023/2")).json()
    assert [item["disDate"] for item in second["data"]["list"]] == [
        f"202402{d}" for d in range(21, 30)
    ]
    assert past == {"data": {"list": None}}
    assert empty == {"data": {"list": []}}


async def test_the_export_refuses_unknown_districts_and_bad_months(open_url: str) -> None:
    async with httpx.AsyncClient(base_url=open_url) as http:
        assert (await http.get("/waste/open/rfid-format/99999/2024/2")).status_code == 404
        assert (await http.get("/waste/open/rfid-format/1114/2024/2")).status_code == 400
        assert (await http.get("/waste/open/rfid-format/11140/2024/13")).status_code == 400
        bad_rows = await http.get("/waste/open/rfid-format/11140/2024/2", params={"rowNum": 0})
        assert bad_rows.status_code == 200  # 0 means no paging, as when it is absent


# The commands


async def test_the_commands_import_from_the_sandbox_and_write_the_export(
    clean: asyncpg.Pool, migrated_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings, servers = Settings.from_env(), Servers(migrated_url, None)
    imported = argparse.Namespace(month=FEBRUARY, sandbox=True)
    out = tmp_path / "11140-2024-02.json"
    exported = argparse.Namespace(district="11140", month=FEBRUARY, out=out)
    # the commands run their own event loop, as `ieum waste …` does
    code = await asyncio.to_thread(rfid_sync.IMPORT_COMMAND.run, settings, servers, imported)
    assert code == 0
    assert (
        "116 city-days of 4 cities (W01, W07, W2B, W3C), 203 rows added" in capsys.readouterr().out
    )
    code = await asyncio.to_thread(rfid_sync.EXPORT_COMMAND.run, settings, servers, exported)
    assert code == 0
    assert json.loads(out.read_text()) == {"data": {"list": expected_items({})}}
    unknown = argparse.Namespace(district="99999", month=FEBRUARY, out=None)
    assert await asyncio.to_thread(rfid_sync.EXPORT_COMMAND.run, settings, servers, unknown) == 1
