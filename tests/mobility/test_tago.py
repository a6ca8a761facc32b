"""TAGO TrainInfoService: the tago adapter against its sandbox over real HTTP (both
publications, the data.go.kr envelope and its quirks, paging, quota and key refusals,
faults), the contract kit, and the documented exchanges."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.datagokr import Reason
from adapters.errors import (
    MalformedResponse,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
    UpstreamTimeout,
)
from adapters.kinds import ScheduledTrain, TrainTimetable
from adapters.registry import Adapter
from adapters.sandbox import rail_network
from adapters.sandbox.server import RunningSandbox, Sandbox, running
from adapters.tago import Tago, adapter, parse, wire
from adapters.tago.reference import TagoCity, TagoStation, VehicleKind
from adapters.tago.sandbox import SANDBOX
from adapters.testing import checks
from resolvers.mobility import stations
from tests.adapters.helpers import adapters_check, sandbox_process

WIRE_DOC = Path(__file__).parents[2] / "docs" / "upstreams" / "tago.md"
BUDGET = 1.0
DAY = date(2026, 8, 12)
KST = ZoneInfo("Asia/Seoul")
SEOUL, BUSAN, SUSEO, DAEJEON = "NAT010000", "NAT014445", "NATH30000", "NAT011668"
CURRENT_TRAINS = "/1613000/TrainInfo/GetStrtpntAlocFndTrainInfo"
LEGACY_TRAINS = "/1613000/TrainInfoService/getStrtpntAlocFndTrainInfo"


@pytest.fixture
async def served() -> AsyncIterator[RunningSandbox]:
    async with running(SANDBOX) as sandbox:
        yield sandbox


def connect(served: RunningSandbox, **settings: Any) -> Tago:
    values = served.settings() | {"timeout_seconds": BUDGET} | settings
    connection = adapter.connect(adapter.read_settings(**values))
    assert isinstance(connection, Tago) and isinstance(connection, TrainTimetable)
    return connection


@pytest.fixture
async def tago(served: RunningSandbox) -> AsyncIterator[Tago]:
    connection = connect(served)
    yield connection
    await connection.aclose()


async def quirks(served: RunningSandbox, **plan: Any) -> None:
    async with httpx.AsyncClient(base_url=served.url) as http:
        (await http.post("/_sandbox/quirks", json=plan)).raise_for_status()


async def served_count(served: RunningSandbox) -> int:
    async with httpx.AsyncClient(base_url=served.url) as http:
        count: int = (await http.get("/_faults")).json()["served"]
    return count


def network_trains(dep: str, arr: str, day: date) -> list[ScheduledTrain]:
    """The truth: what the rail network runs between two stations on a day."""
    return [
        ScheduledTrain(
            train.train_no,
            train.grade,
            dep,
            arr,
            leaving.departs,
            reaching.arrives,
            rail_network.fare(train, dep, arr, "general"),
        )
        for train, leaving, reaching in rail_network.between(day, dep, arr)
        if leaving.departs is not None and reaching.arrives is not None
    ]


# The contract kit, in this process

Check = Callable[[Adapter[Any]], Coroutine[Any, Any, None]]


@pytest.mark.parametrize(
    "check",
    [
        checks.health_passes,
        checks.health_fails_on_5xx,
        checks.main_call_answers,
        checks.malformed_is_specific,
        checks.budget_honoured,
        checks.transient_failures_retried,
        checks.metrics_recorded,
    ],
    ids=lambda check: check.__name__,
)
async def test_the_contract_kit_passes(check: Check) -> None:
    await check(adapter)


# Trains


async def test_trains_between_two_stations_are_the_networks_in_departure_order(
    tago: Tago,
) -> None:
    found = await tago.trains(SEOUL, BUSAN, DAY)
    assert found == network_trains(SEOUL, BUSAN, DAY)
    assert len(found) > 30
    first = found[0]
    assert first.departs_at.utcoffset() == timedelta(hours=9)
    assert first.dep_station == SEOUL and first.arr_station == BUSAN
    assert [t.departs_at for t in found] == sorted(t.departs_at for t in found)
    assert {t.adult_fare for t in found if t.grade == "KTX" and int(t.train_no) < 200} == {59_800}
    assert {t.grade for t in found} >= {"KTX", "ITX-새마을"}


async def test_srt_trains_from_suseo_are_listed_with_their_fare(tago: Tago) -> None:
    found = await tago.trains(SUSEO, BUSAN, DAY)
    assert found and {t.grade for t in found} == {"SRT"}
    assert {t.adult_fare for t in found} == {52_600}


async def test_a_day_is_read_page_by_page_until_a_short_page(served: RunningSandbox) -> None:
    expected = network_trains(SEOUL, DAEJEON, DAY)
    connection = connect(served, page_rows=7)
    before = await served_count(served)
    try:
        assert await connection.trains(SEOUL, DAEJEON, DAY) == expected
    finally:
        await connection.aclose()
    assert await served_count(served) - before == len(expected) // 7 + 1


async def test_a_train_after_midnight_counts_on_the_day_it_leaves_the_station(
    tago: Tago,
) -> None:
    late = next(
        (train, stop)
        for train in rail_network.trains_on(DAY)
        for stop in train.stops[1:-1]
        if stop.departs is not None and stop.departs.date() > DAY
    )
    train, stop = late
    terminus = train.stops[-1].station
    leaving = (train.train_no, stop.departs)
    next_day = await tago.trains(stop.station, terminus, DAY + timedelta(days=1))
    assert leaving in [(found.train_no, found.departs_at) for found in next_day]
    on_day = await tago.trains(stop.station, terminus, DAY)
    assert leaving not in [(found.train_no, found.departs_at) for found in on_day]


async def test_stations_without_a_train_between_them_give_an_empty_list(tago: Tago) -> None:
    assert await tago.trains("NAT601936", "NAT032563", DAY) == []  # 강릉 → 목포
    assert await tago.trains(BUSAN, SEOUL, DAY)  # the other way does run


# Both publications of the service


async def test_the_legacy_publication_answers_the_same(served: RunningSandbox) -> None:
    connection = connect(served, api="legacy")
    try:
        assert await connection.trains(SEOUL, DAEJEON, DAY) == network_trains(SEOUL, DAEJEON, DAY)
    finally:
        await connection.aclose()


@pytest.mark.parametrize(("asked", "retired"), [("current", "current"), ("legacy", "legacy")])
async def test_a_retired_publication_falls_back_to_the_other_and_stays_there(
    served: RunningSandbox, asked: str, retired: str
) -> None:
    await quirks(served, retired=retired)
    connection = connect(served, api=asked, page_rows=1000)
    try:
        before = await served_count(served)
        first = await connection.trains(SEOUL, DAEJEON, DAY)
        assert await served_count(served) - before == 2  # code 12, then the other path
        assert await connection.trains(SEOUL, DAEJEON, DAY) == first
        assert await served_count(served) - before == 3  # straight to the one that answers
        assert connection.api != retired
    finally:
        await connection.aclose()
    assert first == network_trains(SEOUL, DAEJEON, DAY)


async def test_when_neither_publication_answers_the_error_names_both(
    served: RunningSandbox, tago: Tago
) -> None:
    async def retire_both(request: Request) -> JSONResponse:
        return JSONResponse({"response": {"header": wire.header(Reason.NO_SERVICE)}})

    routes = [Route(path, retire_both) for path in (CURRENT_TRAINS, LEGACY_TRAINS)]
    retired = Sandbox("tago", "retired", lambda: Starlette(routes=routes), SANDBOX.configure)
    async with running(retired) as gone:
        connection = connect(gone)
        try:
            with pytest.raises(UpstreamRejected, match=r"TrainInfo/.*TrainInfoService/.*code 12"):
                await connection.trains(SEOUL, DAEJEON, DAY)
        finally:
            await connection.aclose()


# The envelope's quirks


async def test_one_item_comes_as_an_object_and_none_as_an_empty_string(
    served: RunningSandbox, tago: Tago
) -> None:
    params = {"serviceKey": "sandbox-tago-key", "_type": "json", "numOfRows": "10"}
    async with httpx.AsyncClient(base_url=served.url + "/1613000/TrainInfo") as http:
        sejong = await http.get("/GetCtyAcctoTrainSttnList", params=params | {"cityCode": "12"})
        incheon = await http.get("/GetCtyAcctoTrainSttnList", params=params | {"cityCode": "23"})
    assert sejong.json()["response"]["body"]["items"] == {
        "item": {"nodeid": "NAT011298", "nodename": "조치원"}
    }
    assert incheon.json()["response"]["body"]["items"] == ""
    assert await tago.stations("12") == [TagoStation("NAT011298", "조치원", "12")]
    assert await tago.stations("23") == []
    connection = connect(served, page_rows=1)  # every page one object
    try:
        assert await connection.trains(SUSEO, "NAT881014", DAY) == network_trains(
            SUSEO, "NAT881014", DAY
        )
    finally:
        await connection.aclose()


@pytest.mark.parametrize(
    "plan",
    [
        {"numbers_as_strings": True},
        {"total_count": "zero"},
        {"total_count": "inflated"},
        {"max_rows": 5},  # fewer rows a page than asked
    ],
    ids=lambda plan: "-".join(f"{k}={v}" for k, v in plan.items()),
)
async def test_quirks_of_the_envelope_change_nothing_in_the_answer(
    served: RunningSandbox, tago: Tago, plan: dict[str, Any]
) -> None:
    await quirks(served, **plan)
    assert await tago.trains(SEOUL, DAEJEON, DAY) == network_trains(SEOUL, DAEJEON, DAY)
    assert len(await tago.cities()) == 16


async def test_numbers_really_come_as_strings_when_asked(served: RunningSandbox) -> None:
    await quirks(served, numbers_as_strings=True)
    params = {
        "serviceKey": "sandbox-tago-key",
        "_type": "json",
        "depPlaceId": SEOUL,
        "arrPlaceId": BUSAN,
        "depPlandTime": "20260812",
        "numOfRows": "2",
    }
    async with httpx.AsyncClient(base_url=served.url) as http:
        items = (await http.get(CURRENT_TRAINS, params=params)).json()["response"]["body"]["items"]
    assert all(isinstance(item["adultcharge"], str) for item in items["item"])


async def test_no_data_as_code_03_is_an_empty_list(served: RunningSandbox, tago: Tago) -> None:
    await quirks(served, no_data_code=True)
    assert await tago.trains("NAT601936", "NAT032563", DAY) == []
    assert await tago.trains(SEOUL, DAEJEON, DAY)


# Refusals and faults


async def test_an_unregistered_key_is_refused_with_the_gateways_reason(
    served: RunningSandbox,
) -> None:
    connection = connect(served, service_key="not-a-key")
    try:
        with pytest.raises(UpstreamRejected, match="SERVICE_KEY_IS_NOT_REGISTERED_ERROR"):
            await connection.trains(SEOUL, BUSAN, DAY)
        with pytest.raises(UpstreamRejected, match=r"tago.*code 30"):
            await connection.health()
    finally:
        await connection.aclose()


@pytest.mark.parametrize(
    ("plan", "match"),
    [
        ({"quota_code": "22"}, r"LIMITED_NUMBER_OF_SERVICE_REQUESTS_EXCEEDS_ERROR \(code 22\)"),
        ({"quota_code": "23", "quota_shape": "json", "quota_status": 200}, r"PER_SECOND.*code 23"),
        ({"quota_code": "23", "quota_status": 429}, r"rate limited \(HTTP 429\)"),
    ],
)
async def test_a_spent_quota_is_rate_limited_naming_it(
    served: RunningSandbox, tago: Tago, plan: dict[str, Any], match: str
) -> None:
    await quirks(served, quota_left=0, **plan)
    with pytest.raises(UpstreamRateLimited, match=match):
        await tago.trains(SEOUL, BUSAN, DAY)
    await quirks(served, quota_left=1)
    assert await tago.trains(SEOUL, DAEJEON, DAY)  # one page
    with pytest.raises(UpstreamRateLimited):
        await tago.trains(SEOUL, DAEJEON, DAY)  # the day's last call is spent


@pytest.mark.parametrize(
    ("plan", "error"),
    [
        ({"error": "5xx", "status": 502}, UpstreamServerError),
        ({"error": "hang"}, UpstreamTimeout),
        ({"error": "malformed"}, MalformedResponse),
    ],
)
async def test_faults_become_upstream_errors(
    served: RunningSandbox, tago: Tago, plan: dict[str, Any], error: type[Exception]
) -> None:
    await served.inject(**plan)
    with pytest.raises(error, match="tago"):
        await tago.trains(SEOUL, BUSAN, DAY)
    await served.clear()
    assert await tago.trains(SEOUL, BUSAN, DAY)


async def test_one_5xx_or_429_in_a_paged_read_is_retried(served: RunningSandbox) -> None:
    connection = connect(served, page_rows=10)
    try:
        await served.inject(error="5xx", count=1, path="GetStrtpnt")
        first = await connection.trains(SEOUL, BUSAN, DAY)
        await served.inject(error="rate_limited", retry_after=0, count=1)
        assert await connection.trains(SEOUL, BUSAN, DAY) == first
    finally:
        await connection.aclose()
    assert first == network_trains(SEOUL, BUSAN, DAY)


def misbehaving(item: dict[str, Any]) -> Sandbox:
    """A service answering the same two-row first page whatever is asked."""

    async def same(request: Request) -> JSONResponse:
        asked = int(request.query_params["numOfRows"])
        return JSONResponse(wire.page([item, item], 1, asked))

    app = Starlette(routes=[Route(CURRENT_TRAINS, same)])
    return Sandbox("tago", "misbehaving", lambda: app, SANDBOX.configure)


TRAIN_ITEM = {
    "adultcharge": 23700,
    "arrplacename": "대전",
    "arrplandtime": 20260812100200,
    "depplacename": "서울",
    "depplandtime": 20260812090000,
    "traingradename": "KTX",
    "trainno": 101,
}


@pytest.mark.parametrize(
    ("item", "rows", "match"),
    [
        (TRAIN_ITEM, 2, r"page 2 of getStrtpntAlocFndTrainInfo repeats page 1"),
        (
            TRAIN_ITEM | {"depplandtime": 20260813090000, "arrplandtime": 20260813100000},
            3,
            "leaves on 2026-08-13",
        ),
    ],
)
async def test_a_service_ignoring_page_or_date_is_malformed(
    item: dict[str, Any], rows: int, match: str
) -> None:
    async with running(misbehaving(item)) as broken:
        connection = connect(broken, page_rows=rows)
        try:
            with pytest.raises(MalformedResponse, match=match):
                await connection.trains(SEOUL, DAEJEON, DAY)
        finally:
            await connection.aclose()


# Reading answers


def answer(body: str, status: int = 200) -> httpx.Response:
    return httpx.Response(status, text=body)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (json.dumps(wire.page([TRAIN_ITEM], 1, 10)), 1),
        (json.dumps(wire.page([], 1, 10)), 0),
        ('{"response":{"header":{"resultCode":"03","resultMsg":"NODATA_ERROR"}}}', 0),
        (
            '{"response":{"header":{"resultCode":0},"body":{"items":{"item":[]},"totalCount":"x"}}}',
            0,
        ),
        ('{"response":{"header":{"resultCode":"00"},"body":{"items":{"item":""}}}}', 0),
    ],
)
def test_the_envelopes_shapes_are_read(body: str, expected: int) -> None:
    assert len(parse.page(answer(body)).items) == expected


def test_train_items_are_read_from_numbers_or_strings() -> None:
    as_strings = {key: str(value) for key, value in TRAIN_ITEM.items()}
    expected = ScheduledTrain(
        "101",
        "KTX",
        SEOUL,
        DAEJEON,
        datetime(2026, 8, 12, 9, 0, tzinfo=KST),
        datetime(2026, 8, 12, 10, 2, tzinfo=KST),
        23_700,
    )
    assert parse.scheduled(TRAIN_ITEM, SEOUL, DAEJEON) == expected
    assert parse.scheduled(as_strings, SEOUL, DAEJEON) == expected


@pytest.mark.parametrize(
    ("body", "status", "error", "match"),
    [
        (
            '{"response":{"header":{"resultCode":"12","resultMsg":"NO_OPENAPI_SERVICE_ERROR"}}}',
            200,
            parse.ServiceRetired,
            "code 12",
        ),
        (wire.gateway_xml(Reason.NO_SERVICE), 404, parse.ServiceRetired, "code 12"),
        (wire.gateway_xml(Reason.QUOTA_EXCEEDED), 200, UpstreamRateLimited, "code 22"),
        (json.dumps(wire.gateway_json(Reason.KEY_EXPIRED)), 403, UpstreamRejected, "code 31"),
        ('{"response":{"header":{"resultCode":"99","resultMsg":"UNKNOWN_ERROR"}}}', 200,
         UpstreamServerError, "UNKNOWN_ERROR"),
        ('{"response":{"header":{"resultMsg":"OK"}}}', 200, MalformedResponse, "no resultCode"),
        ("<html>Bad Gateway</html>", 200, MalformedResponse, "XML answer without a reason"),
        ('{"response":{"header":{"resultCode":"00"},"body":{"items":[1]}}}', 200,
         MalformedResponse, "items is a list"),
    ],
)  # fmt: skip
def test_errors_in_either_envelope_are_specific(
    body: str, status: int, error: type[UpstreamError], match: str
) -> None:
    with pytest.raises(error, match=match):
        if status == 200:
            parse.page(answer(body, status))
        else:
            raise parse.refusal(answer(body, status))


@pytest.mark.parametrize(
    ("changed", "match"),
    [
        ({"depplandtime": "2026-08-12 09:00"}, "not YYYYMMDDHHMISS"),
        ({"depplandtime": "20261312090000"}, "not YYYYMMDDHHMISS"),  # fourteen digits, month 13
        ({"arrplandtime": "２０２６０８１２１００２００"}, "not YYYYMMDDHHMISS"),  # not ASCII
        ({"arrplandtime": 20260812085900}, "arrives before it leaves"),
        ({"adultcharge": -100}, "not a whole number"),
        ({"trainno": None}, "trainno is None"),
    ],
)
def test_odd_train_items_are_malformed(changed: dict[str, Any], match: str) -> None:
    with pytest.raises(MalformedResponse, match=match):
        parse.scheduled(TRAIN_ITEM | changed, SEOUL, DAEJEON)


# Reference lists


async def test_cities_stations_and_train_kinds_are_listed(tago: Tago) -> None:
    cities = await tago.cities()
    assert cities[0] == TagoCity("11", "서울특별시") and len(cities) == 16
    seoul = await tago.stations("11")
    assert TagoStation(SEOUL, "서울", "11") in seoul and TagoStation(SUSEO, "수서", "11") in seoul
    every = [station for city in cities for station in await tago.stations(city.city_code)]
    assert sorted(s.code for s in every) == sorted(s.code for s in stations.STATIONS)
    kinds = await tago.vehicle_kinds()
    assert VehicleKind("00", "KTX") in kinds and VehicleKind("17", "SRT") in kinds


async def test_the_sandbox_filters_by_train_grade_code(served: RunningSandbox) -> None:
    params = {
        "serviceKey": "sandbox-tago-key",
        "_type": "json",
        "depPlaceId": SEOUL,
        "arrPlaceId": BUSAN,
        "depPlandTime": "20260812",
        "trainGradeCode": "08",
        "numOfRows": "100",
    }
    async with httpx.AsyncClient(base_url=served.url) as http:
        itx = (await http.get(LEGACY_TRAINS, params=params)).json()["response"]["body"]
        bad = (await http.get(LEGACY_TRAINS, params=params | {"trainGradeCode": "99"})).json()
    assert {item["traingradename"] for item in itx["items"]["item"]} == {"ITX-새마을"}
    assert bad["response"]["header"]["resultCode"] == "10"


# The sandbox as a process, and the documented exchanges


def test_ieum_sandbox_tago_serves_what_the_adapter_checks() -> None:
    with sandbox_process("tago") as (url, settings):
        assert settings == {
            "IEUM_TAGO_BASE_URL": url + "/1613000",
            "IEUM_TAGO_SERVICE_KEY": "sandbox-tago-key",
        }
        healthy = adapters_check("tago", settings)
        assert healthy.returncode == 0, healthy.stderr
        assert healthy.stdout.strip() == "tago: healthy"
        refused = adapters_check("tago", settings | {"IEUM_TAGO_SERVICE_KEY": "encoded%2Bkey"})
        assert refused.returncode == 1
        assert "SERVICE_KEY_IS_NOT_REGISTERED_ERROR" in refused.stderr


EXCHANGE = re.compile(
    r"```http\n(?P<request>.*?)```\s*```(?P<kind>json|xml)\n(?P<answer>.*?)```", re.DOTALL
)


async def test_the_documented_exchanges_are_what_the_sandbox_answers() -> None:
    """docs/upstreams/tago.md, replayed in order against a fresh sandbox."""
    exchanges = list(EXCHANGE.finditer(WIRE_DOC.read_text()))
    assert len(exchanges) >= 8
    async with running(SANDBOX) as served, httpx.AsyncClient(base_url=served.url) as http:
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
            retired = "NO_OPENAPI_SERVICE_ERROR" in response.text  # answered with HTTP 200
            assert response.status_code == (403 if gateway and not retired else 200), request_line
