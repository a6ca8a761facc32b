"""The local route search: the odsay adapter against its sandbox and against recorded-shape
answers, over real loopback HTTP (each subPath kind, walks given their ends, strings for
numbers, the error shapes, faults), the contract kit, and the documented exchanges."""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapters.errors import (
    MalformedResponse,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
    UpstreamTimeout,
)
from adapters.kinds import LegMode, LocalLeg, LocalPath, LocalRoutes
from adapters.odsay import adapter, walking, wire
from adapters.odsay.sandbox import API_KEY, BASE_PATH, SANDBOX
from adapters.registry import Adapter
from adapters.sandbox.server import RunningSandbox, Sandbox, running
from adapters.testing import checks
from tests.adapters.helpers import adapters_check, sandbox_process

WIRE_DOC = Path(__file__).parents[2] / "docs" / "upstreams" / "odsay.md"
BUDGET = 1.0

SEOUL_STATION = (37.55465, 126.97059)
GANGNAM = (37.49795, 127.02762)
BUSAN_STATION = (35.11513, 129.04220)
HAEUNDAE = (35.16310, 129.16350)
GANGNEUNG_STATION = (37.76420, 128.89960)  # no subway: buses only
GYEONGPO = (37.80550, 128.90850)  # 경포해변, 4.7 km away


@pytest.fixture
async def served() -> AsyncIterator[RunningSandbox]:
    async with running(SANDBOX) as sandbox:
        yield sandbox


def connect(served: RunningSandbox, **settings: Any) -> LocalRoutes:
    values = served.settings() | {"timeout_seconds": BUDGET} | settings
    connection = adapter.connect(adapter.read_settings(**values))
    assert isinstance(connection, LocalRoutes)
    return connection


@pytest.fixture
async def routes(served: RunningSandbox) -> AsyncIterator[LocalRoutes]:
    connection = connect(served)
    yield connection
    await connection.aclose()


async def search(served: RunningSandbox, **params: Any) -> dict[str, Any]:
    """The sandbox's raw answer, as the service's wire carries it."""
    async with httpx.AsyncClient(base_url=served.url) as http:
        response = await http.get(BASE_PATH + wire.SEARCH, params={"apiKey": API_KEY, **params})
    assert response.status_code == 200
    answer: dict[str, Any] = response.json()
    return answer


def rides(path: LocalPath) -> list[LocalLeg]:
    return [leg for leg in path.legs if leg.mode != LegMode.WALK]


def capital_area_fare(path: LocalPath) -> int:
    """The card fare as the capital area's integrated fare charges it, worked out apart."""
    ridden = rides(path)
    base = max(1400 if leg.mode == LegMode.SUBWAY else 1500 for leg in ridden)
    if len(ridden) == 1 and ridden[0].mode == LegMode.BUS:
        return base
    km = sum(leg.meters for leg in ridden) / 1000
    return base + 100 * math.ceil(max(0.0, km - 10) / 5)


def assert_connected(path: LocalPath, origin: tuple[float, float], to: tuple[float, float]) -> None:
    """The legs run from the origin to the destination, each starting where one ended (a
    walk and a ride meet at the ride's stop, or at the station exit the walk uses)."""
    first, last = path.legs[0], path.legs[-1]
    assert (first.from_lat, first.from_lng) == origin and first.from_name == ""
    assert (last.to_lat, last.to_lng) == to and last.to_name == ""
    for before, after in zip(path.legs, path.legs[1:], strict=False):
        gap = walking.straight_m(before.to_lat, before.to_lng, after.from_lat, after.from_lng)
        assert gap < 150, (before, after)
        assert before.to_name == after.from_name


# The adapter against the sandbox


async def test_two_seoul_points_get_subway_bus_and_mixed_paths(routes: LocalRoutes) -> None:
    found = await routes.paths(*SEOUL_STATION, *GANGNAM)
    assert {frozenset(leg.mode for leg in rides(path)) for path in found} == {
        frozenset({LegMode.SUBWAY}),
        frozenset({LegMode.BUS}),
        frozenset({LegMode.BUS, LegMode.SUBWAY}),
    }
    assert [path.minutes for path in found] == sorted(path.minutes for path in found)
    for path in found:
        assert_connected(path, SEOUL_STATION, GANGNAM)
        assert path.minutes == sum(leg.minutes for leg in path.legs)
        assert path.walk_meters == sum(w.meters for w in path.legs if w.mode == LegMode.WALK)
        assert path.transfers == len(rides(path)) - 1
        assert path.fare == capital_area_fare(path)
        for leg in rides(path):
            assert leg.from_name and leg.to_name and leg.stops >= 1
            assert re.fullmatch(r"[1-9]호선|(간선|지선) [0-9]{3,4}", leg.line), leg.line


async def test_a_limit_gives_the_best_paths_only(routes: LocalRoutes) -> None:
    """A journey shows the service's best path: asked for one, the adapter reads one."""
    every = await routes.paths(*SEOUL_STATION, *GANGNAM)
    assert len(every) == 3
    assert await routes.paths(*SEOUL_STATION, *GANGNAM, limit=1) == every[:1]
    assert await routes.paths(*SEOUL_STATION, *GANGNAM, limit=2) == every[:2]
    with pytest.raises(ValueError, match="limit"):
        await routes.paths(*SEOUL_STATION, *GANGNAM, limit=0)


@pytest.mark.parametrize(
    ("origin", "destination"), [(SEOUL_STATION, GANGNAM), (BUSAN_STATION, HAEUNDAE)]
)
async def test_speeds_and_distances_are_a_citys(
    routes: LocalRoutes, origin: tuple[float, float], destination: tuple[float, float]
) -> None:
    found = await routes.paths(*origin, *destination)
    straight = walking.straight_m(*origin, *destination)
    for path in found:
        # longer than the straight line, but not absurdly
        assert straight < sum(leg.meters for leg in path.legs) < straight * 2
        for leg in path.legs:
            if leg.mode == LegMode.WALK and leg.meters:
                assert leg.minutes == math.ceil(leg.meters / 75)  # 4.5 km/h
            elif leg.mode == LegMode.BUS:
                assert leg.minutes == max(1, math.ceil(leg.meters / 300))  # 18 km/h
                assert 300 < leg.meters / leg.stops < 650
            elif leg.mode == LegMode.SUBWAY:
                assert leg.minutes == 2 * leg.stops  # 2 minutes a station
                assert 800 < leg.meters / leg.stops < 1500  # about 33 km/h
    walks = [leg for path in found for leg in path.legs if leg.mode == LegMode.WALK]
    assert all(leg.meters <= 1400 for leg in walks)  # stops lie within reach of the points


async def test_a_city_without_a_subway_gets_buses_only(routes: LocalRoutes) -> None:
    found = await routes.paths(*GANGNEUNG_STATION, *GYEONGPO)
    assert found
    assert all(leg.mode != LegMode.SUBWAY for path in found for leg in path.legs)
    assert {len(rides(path)) for path in found} == {1, 2}  # direct, and with a transfer
    for path in found:
        assert_connected(path, GANGNEUNG_STATION, GYEONGPO)
        assert path.fare == capital_area_fare(path)
        assert all(leg.line.startswith("일반 ") for leg in rides(path))


async def test_answers_are_the_same_for_the_same_points_and_differ_for_others(
    routes: LocalRoutes,
) -> None:
    first = await routes.paths(*SEOUL_STATION, *GANGNAM)
    assert await routes.paths(*SEOUL_STATION, *GANGNAM) == first
    elsewhere = await routes.paths(SEOUL_STATION[0] + 0.001, SEOUL_STATION[1], *GANGNAM)
    assert elsewhere != first


async def test_x_is_the_longitude_and_y_the_latitude(served: RunningSandbox) -> None:
    answer = await search(
        served, SX=SEOUL_STATION[1], SY=SEOUL_STATION[0], EX=GANGNAM[1], EY=GANGNAM[0]
    )
    result = answer["result"]
    assert result["pointDistance"] == round(walking.straight_m(*SEOUL_STATION, *GANGNAM))
    ride = next(s for s in result["path"][0]["subPath"] if s["trafficType"] != wire.Traffic.WALK)
    assert walking.straight_m(ride["startY"], ride["startX"], *SEOUL_STATION) < 1000
    swapped = await search(
        served, SX=SEOUL_STATION[0], SY=SEOUL_STATION[1], EX=GANGNAM[0], EY=GANGNAM[1]
    )
    assert swapped == wire.error(wire.Code.OUTSIDE_SERVICE_AREA)


async def test_the_order_follows_opt(served: RunningSandbox) -> None:
    points = {"SX": BUSAN_STATION[1], "SY": BUSAN_STATION[0], "EX": HAEUNDAE[1], "EY": HAEUNDAE[0]}

    def ranked(answer: dict[str, Any], field: str) -> list[int]:
        return [path["info"][field] for path in answer["result"]["path"]]

    by_time = await search(served, **points, OPT=1)
    assert ranked(by_time, "totalTime") == sorted(ranked(by_time, "totalTime"))
    by_walking = await search(served, **points, OPT=3)
    assert ranked(by_walking, "totalWalk") == sorted(ranked(by_walking, "totalWalk"))
    assert await search(served, **points, OPT=7) == wire.error(
        wire.Code.BAD_PARAMETER, "필수 입력값 형식 및 범위 오류: OPT is 0, 1, 2 or 3"
    )


async def test_points_within_700_m_are_one_walk(
    served: RunningSandbox, routes: LocalRoutes
) -> None:
    near = (SEOUL_STATION[0] + 0.003, SEOUL_STATION[1] + 0.002)  # about 380 m
    answer = await search(served, SX=SEOUL_STATION[1], SY=SEOUL_STATION[0], EX=near[1], EY=near[0])
    assert answer == {"error": {"msg": "출, 도착지가 700m이내입니다.", "code": "-98"}}
    (walk,) = await routes.paths(*SEOUL_STATION, *near)
    meters = round(walking.straight_m(*SEOUL_STATION, *near) * 1.3)
    assert walk == LocalPath(
        minutes=math.ceil(meters / 75),
        fare=0,
        walk_meters=meters,
        transfers=0,
        legs=(
            LocalLeg(
                LegMode.WALK, math.ceil(meters / 75), meters, "", "", *SEOUL_STATION, *near, "", 0
            ),
        ),
    )


async def test_no_path_is_an_empty_list(routes: LocalRoutes) -> None:
    assert await routes.paths(*SEOUL_STATION, *BUSAN_STATION) == []  # not within a city
    assert await routes.paths(35.0, 140.0, 35.1, 140.1) == []  # outside the service area


async def test_a_refused_key_is_rejected_with_the_services_reason(
    served: RunningSandbox,
) -> None:
    connection = connect(served, api_key="not-a-key")
    try:
        with pytest.raises(UpstreamRejected, match=r"odsay.*ApiKeyAuthFailed.*code 500"):
            await connection.paths(*SEOUL_STATION, *GANGNAM)
        with pytest.raises(UpstreamRejected, match="ApiKeyAuthFailed"):
            await connection.health()
    finally:
        await connection.aclose()


async def test_coordinates_must_be_numbers(routes: LocalRoutes) -> None:
    with pytest.raises(ValueError, match="finite"):
        await routes.paths(math.nan, 126.9, 37.5, 127.0)


@pytest.mark.parametrize(
    ("plan", "error"),
    [
        ({"error": "5xx", "status": 502}, UpstreamServerError),
        ({"error": "hang"}, UpstreamTimeout),
        ({"error": "malformed"}, MalformedResponse),
    ],
)
async def test_faults_become_upstream_errors(
    served: RunningSandbox, routes: LocalRoutes, plan: dict[str, Any], error: type[Exception]
) -> None:
    await served.inject(**plan)
    with pytest.raises(error, match="odsay"):
        await routes.paths(*SEOUL_STATION, *GANGNAM)
    await served.clear()
    assert len(await routes.paths(*SEOUL_STATION, *GANGNAM)) == 3


async def test_a_slow_service_answers_within_the_budget_and_one_5xx_is_retried(
    served: RunningSandbox, routes: LocalRoutes
) -> None:
    expected = await routes.paths(*SEOUL_STATION, *GANGNAM)
    await served.inject(latency_seconds=0.3)
    assert await routes.paths(*SEOUL_STATION, *GANGNAM) == expected
    await served.inject(error="5xx", count=1)
    assert await routes.paths(*SEOUL_STATION, *GANGNAM) == expected


# Answers in the shapes users of the real service recorded, served over HTTP


@dataclass
class Canned:
    body: Any = None
    status: int = 200


@pytest.fixture
async def canned() -> AsyncIterator[tuple[Canned, LocalRoutes]]:
    """An ODsay that answers whatever body the test sets."""
    answer = Canned()

    async def respond(request: Request) -> Response:
        return JSONResponse(answer.body, status_code=answer.status)

    def app() -> Starlette:
        return Starlette(routes=[Route(BASE_PATH + wire.SEARCH, respond)])

    async with running(Sandbox("odsay", "canned answers", app, SANDBOX.configure)) as served:
        connection = connect(served)
        yield answer, connection
        await connection.aclose()


ORIGIN = (37.49790, 127.02770)  # near 강남역
DESTINATION = (37.54410, 126.95120)  # near 공덕역


def subway(line: str, code: int, start: tuple[str, float, float], end: tuple[str, float, float],
           minutes: int, meters: int, stations: int, **exits: Any) -> dict[str, Any]:  # fmt: skip
    return {
        "trafficType": 1, "distance": meters, "sectionTime": minutes, "stationCount": stations,
        "lane": [{"name": line, "subwayCode": code, "subwayCityCode": 1000}],
        "intervalTime": 5, "startName": start[0], "startX": start[2], "startY": start[1],
        "endName": end[0], "endX": end[2], "endY": end[1], "way": end[0], "wayCode": 1,
        "door": "null", "startID": 1, "endID": 2, **exits,
    }  # fmt: skip


RECORDED = {
    "result": {
        "searchType": 0, "outTrafficCheck": 0, "busCount": 1, "subwayCount": 1,
        "subwayBusCount": 0, "pointDistance": 8480, "startRadius": 700, "endRadius": 700,
        "path": [
            {
                "pathType": 1,
                "info": {"trafficDistance": 14900.0, "totalWalk": 102, "totalTime": 33,
                         "payment": 1650, "busTransitCount": 0, "subwayTransitCount": 3,
                         "firstStartStation": "강남", "lastEndStation": "공덕",
                         "totalDistance": 15002.0, "totalWalkTime": -1},
                "subPath": [
                    {"trafficType": 3, "distance": 3, "sectionTime": 1},
                    subway("수도권 2호선", 2, ("강남", 37.497949, 127.027618),
                           ("사당", 37.476559, 126.981359), 9, 5200, 4,
                           startExitNo="8", startExitX=127.02719, startExitY=37.49753),
                    {"trafficType": 3, "distance": 0, "sectionTime": 0},
                    subway("수도권 4호선", 4, ("사당", 37.476793, 126.981662),
                           ("삼각지", 37.534539, 126.97298), 14, 7600, 5),
                    {"trafficType": 3, "distance": 0, "sectionTime": 2},
                    subway("수도권 6호선", 6, ("삼각지", 37.535584, 126.974018),
                           ("공덕", 37.543509, 126.951968), 6, 2100, 2,
                           endExitNo="1", endExitX="126.950498", endExitY="37.543967"),
                    {"trafficType": 3, "distance": 99, "sectionTime": 1},
                ],
            },
            {
                "pathType": 2,
                "info": {"trafficDistance": "10057.0", "totalWalk": "327", "totalTime": "37",
                         "payment": "1500", "busTransitCount": "1", "subwayTransitCount": "0"},
                "subPath": [
                    {"trafficType": "3", "distance": "98", "sectionTime": "1"},
                    {"trafficType": "2", "distance": "10057", "sectionTime": "33",
                     "stationCount": "17",
                     "lane": [{"busNo": 740, "type": "11", "busID": 1273},
                              {"busNo": "741", "type": 11, "busID": 1274}],
                     "startName": "강남역9번출구", "startX": "127.026557", "startY": "37.497824",
                     "endName": "공덕역6번출구", "endX": "126.953343", "endY": "37.54308"},
                    {"trafficType": "3", "distance": "229", "sectionTime": "3"},
                ],
            },
            {
                "pathType": 11,  # a train between cities, which the adapter does not ask for
                "info": {"totalTime": 150, "payment": 23700, "totalWalk": 0},
                "subPath": [{"trafficType": 4, "distance": 300000, "sectionTime": 150}],
            },
        ],
    }
}  # fmt: skip


async def test_a_recorded_answer_becomes_typed_paths(
    canned: tuple[Canned, LocalRoutes],
) -> None:
    answer, routes = canned
    answer.body = RECORDED
    subway_path, bus_path = await routes.paths(*ORIGIN, *DESTINATION)

    assert (subway_path.minutes, subway_path.fare, subway_path.walk_meters) == (33, 1650, 102)
    assert subway_path.transfers == 2
    # the empty step between 2호선 and 4호선 is left out; the 2-minute change is kept
    assert [(leg.mode, leg.line, leg.minutes, leg.meters) for leg in subway_path.legs] == [
        (LegMode.WALK, "", 1, 3),
        (LegMode.SUBWAY, "2호선", 9, 5200),
        (LegMode.SUBWAY, "4호선", 14, 7600),
        (LegMode.WALK, "", 2, 0),
        (LegMode.SUBWAY, "6호선", 6, 2100),
        (LegMode.WALK, "", 1, 99),
    ]
    to_station, line_2, _, change, _, from_station = subway_path.legs
    # walks end at the exits the service names, or at the stations
    assert (to_station.from_lat, to_station.from_lng) == ORIGIN
    assert (to_station.to_name, to_station.to_lat, to_station.to_lng) == (
        "강남",
        37.49753,
        127.02719,
    )
    assert (line_2.from_name, line_2.to_name, line_2.stops) == ("강남", "사당", 4)
    assert (line_2.from_lat, line_2.from_lng) == (37.497949, 127.027618)
    assert (change.from_name, change.to_name) == ("삼각지", "삼각지")
    assert (change.from_lat, change.from_lng) == (37.534539, 126.97298)  # 4호선's 삼각지
    assert (change.to_lat, change.to_lng) == (37.535584, 126.974018)  # 6호선's 삼각지
    assert (from_station.from_lat, from_station.from_lng) == (37.543967, 126.950498)
    assert (from_station.to_lat, from_station.to_lng) == DESTINATION

    # every number of the bus path came as a string, the bus number as a number
    assert (bus_path.minutes, bus_path.fare, bus_path.walk_meters, bus_path.transfers) == (
        37, 1500, 327, 0,
    )  # fmt: skip
    walk_in, bus, walk_out = bus_path.legs
    assert bus == LocalLeg(
        LegMode.BUS, 33, 10057, "강남역9번출구", "공덕역6번출구", 37.497824, 127.026557,
        37.54308, 126.953343, "간선 740", 17,
    )  # fmt: skip
    assert (walk_in.to_lat, walk_in.to_lng, walk_in.to_name) == (
        37.497824,
        127.026557,
        "강남역9번출구",
    )
    assert (walk_out.from_lat, walk_out.from_lng) == (37.54308, 126.953343)


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"msg": "검색결과가 없습니다.", "code": "-99"}},
        {"error": {"msg": "서비스 지역이 아닙니다.", "code": 6}},
        {"error": [{"code": "5", "message": "출, 도착지 정류장이 없습니다."}]},
        {"result": {"searchType": 0, "path": []}},
        {"result": {"searchType": 0}},
    ],
    ids=["no-result", "outside", "no-stops-as-list", "empty-path", "no-path"],
)
async def test_no_way_found_is_an_empty_list(
    canned: tuple[Canned, LocalRoutes], body: dict[str, Any]
) -> None:
    answer, routes = canned
    answer.body = body
    assert await routes.paths(*ORIGIN, *DESTINATION) == []


@pytest.mark.parametrize(
    ("body", "status", "error", "match"),
    [
        (wire.key_refused(), 200, UpstreamRejected, r"API key was refused.*ApiKeyAuthFailed"),
        ({"error": {"code": "500", "msg": "서버 내부 오류"}}, 200, UpstreamServerError, "code 500"),
        ({"error": {"code": "429", "message": "Too Many Requests"}}, 200, UpstreamRateLimited,
         "Too Many Requests"),
        ({"error": [{"code": "429", "message": "Too Many Requests"}]}, 200, UpstreamRateLimited,
         "code 429"),
        ({"error": {"code": "-8", "msg": "필수 입력값 형식 및 범위 오류"}}, 200, UpstreamRejected,
         "code -8"),
        ({"error": {"code": "-9", "msg": "필수 입력값 누락"}}, 400, UpstreamRejected, "code -9"),
        ({"error": "down"}, 200, MalformedResponse, "not an object"),
        ({"status": "ok"}, 200, MalformedResponse, "neither a result nor an error"),
        ({"result": {"path": {"pathType": 1}}}, 200, MalformedResponse, "result.path is a dict"),
        ({"result": {"path": [{"pathType": 1, "info": {}, "subPath": []}]}}, 200,
         MalformedResponse, "without subPath"),
        ({"result": {"path": [{"info": {"totalTime": "soon"}, "subPath": [
            {"trafficType": 3, "distance": 5, "sectionTime": 1}]}]}}, 200, MalformedResponse,
         "totalTime is 'soon'"),
        ({"result": {"path": [{"info": {"totalTime": 9, "payment": 1400, "totalWalk": 0},
                               "subPath": [{"trafficType": 1, "distance": 900,
                                            "sectionTime": 9, "stationCount": 1,
                                            "lane": [{"name": "수도권 2호선"}],
                                            "startName": "A", "startX": 37.5, "startY": 127.0,
                                            "endName": "B", "endX": 37.5, "endY": 127.0}]}]}},
         200, MalformedResponse, "startY is 127.0, not a coordinate in Korea"),
    ],
    ids=["bad-key", "server-error", "rate-limited", "rate-limited-list", "bad-parameter",
         "http-400", "error-text", "neither", "path-object", "no-subpath", "text-number",
         "swapped-xy"],
)  # fmt: skip
async def test_error_shapes_are_specific(
    canned: tuple[Canned, LocalRoutes],
    body: dict[str, Any],
    status: int,
    error: type[Exception],
    match: str,
) -> None:
    answer, routes = canned
    answer.body, answer.status = body, status
    with pytest.raises(error, match=match):
        await routes.paths(*ORIGIN, *DESTINATION)


# The contract kit and the commands


CONTRACT: list[Callable[[Adapter[Any]], Awaitable[None]]] = [
    checks.health_passes,
    checks.health_fails_on_5xx,
    checks.main_call_answers,
    checks.malformed_is_specific,
    checks.budget_honoured,
    checks.transient_failures_retried,
    checks.metrics_recorded,
]


@pytest.mark.parametrize("check", CONTRACT, ids=lambda check: check.__name__)
async def test_the_contract_kit_passes(check: Callable[[Adapter[Any]], Awaitable[None]]) -> None:
    await check(adapter)


def test_ieum_sandbox_odsay_serves_what_the_adapter_checks() -> None:
    with sandbox_process("odsay") as (url, settings):
        assert settings == {"IEUM_ODSAY_BASE_URL": url + "/v1/api", "IEUM_ODSAY_API_KEY": API_KEY}
        healthy = adapters_check("odsay", settings)
        assert healthy.returncode == 0, healthy.stderr
        assert healthy.stdout.strip() == "odsay: healthy"
        refused = adapters_check("odsay", settings | {"IEUM_ODSAY_API_KEY": "wrong"})
        assert refused.returncode == 1
        assert "ApiKeyAuthFailed" in refused.stderr


EXCHANGE = re.compile(r"```http\n(?P<request>.*?)```\s*```json\n(?P<answer>.*?)```", re.DOTALL)


async def test_the_documented_exchanges_are_what_the_sandbox_answers() -> None:
    """docs/upstreams/odsay.md, replayed against the sandbox."""
    exchanges = list(EXCHANGE.finditer(WIRE_DOC.read_text()))
    assert len(exchanges) == 5
    async with running(SANDBOX) as served, httpx.AsyncClient(base_url=served.url) as http:
        for exchange in exchanges:
            method, path = exchange["request"].strip().split(" ")
            response = await http.request(method, path)
            assert response.status_code == 200, path
            assert response.json() == json.loads(exchange["answer"]), path
