"""A shared entity (District) is declared by one domain and extended by others in their own
subgraphs; every build composes one District of the selected domains' fields."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import strawberry

from hub import domains
from hub.core import db
from hub.core.caller import ANONYMOUS
from hub.core.context import Context
from hub.core.domain import Domain
from hub.core.result_cache import ResultCache
from hub.core.settings import Settings
from resolvers.sensors import queries
from resolvers.sensors.live import LiveReadings
from resolvers.sensors.rollup_cache import RollupCache
from resolvers.sensors.settings import SensorsSettings
from resolvers.sensors.state import SensorsState
from schema.builder import EntityError, build_schema
from tests.schema.test_federation import compose, composed  # noqa: F401 (compose: a fixture)

PLATFORM_FIELDS = [
    "code", "name", "nameEn", "province", "provinceCode", "provinceEn", "legacyCodes",
    "source", "boundary", "h3Cells",
]  # fmt: skip
HUB_FIELDS = [*PLATFORM_FIELDS, "airQuality", "wasteVolumes"]


def district_fields(schema: strawberry.federation.Schema) -> list[str]:
    return list(schema._schema.type_map["District"].fields)  # type: ignore[union-attr]


def district_sdl(schema: strawberry.federation.Schema) -> str:
    found = re.search(r"type District @key[^}]*}", schema.as_str())
    assert found, "no District entity"
    return found.group(0)


def test_each_build_has_one_district_of_its_domains_fields() -> None:
    # One after another in one process, twice over: no build leaks into the next.
    for _ in range(2):
        assert district_fields(build_schema(domains.select(None))) == HUB_FIELDS
        assert district_fields(build_schema(domains.select("platform"))) == PLATFORM_FIELDS
        assert district_fields(build_schema(domains.select("sensors"))) == ["code", "airQuality"]
        assert district_fields(build_schema(domains.select("waste"))) == ["code", "wasteVolumes"]
    # The order asked for does not change who owns the entity.
    assert district_fields(build_schema(domains.by_names(["sensors", "platform"]))) == [
        *PLATFORM_FIELDS,
        "airQuality",
    ]


def test_the_subgraph_sdls_declare_district_as_an_entity() -> None:
    sensors = build_schema(domains.select("sensors")).as_str()
    assert district_sdl(build_schema(domains.select("sensors"))).split("\n")[0] == (
        'type District @key(fields: "code") {'
    )
    assert "_entities(representations: [_Any!]!): [_Entity]!" in sensors
    assert "union _Entity = District" in sensors
    assert "airQuality" not in build_schema(domains.select("platform")).as_str()
    assert "type AirQuality" not in build_schema(domains.select("platform")).as_str()
    hub = district_sdl(build_schema(domains.select(None)))
    assert "  name: String!" in hub and "  airQuality: AirQuality\n" in hub
    assert "wasteVolumes(from: Date!, to: Date!): [DailyWasteVolume!]!\n}" in hub


def test_platform_does_not_import_sensors() -> None:
    check = "import sys, schema.platform; assert 'schema.sensors' not in sys.modules"
    subprocess.run([sys.executable, "-c", check], check=True, timeout=60)


def test_two_domains_declaring_the_same_entity_field_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    @strawberry.federation.type(keys=["code"], name="District")
    class Clash:
        code: str
        name: str  # platform's

    @strawberry.type
    class ClashQuery:
        clash: int = 0

    clash = Domain("clash", query=ClashQuery, types=(Clash,))
    with pytest.raises(EntityError, match=r"District\.name is declared by both"):
        build_schema([*domains.select("platform"), clash])


def test_the_subgraphs_compose_into_one_district(compose: Path, tmp_path: Path) -> None:  # noqa: F811
    paths = {}
    for name in ("platform", "sensors"):
        paths[name] = tmp_path / f"{name}.graphql"
        paths[name].write_text(build_schema(domains.select(name)).as_str())
    result = composed(compose, paths)
    assert "errors" not in result, result
    supergraph = str(result["supergraphSdl"])
    assert (
        'type District @join__type(graph: PLATFORM, key: "code") '
        '@join__type(graph: SENSORS, key: "code") {' in supergraph
    )
    assert "airQuality: AirQuality @join__field(graph: SENSORS)" in supergraph
    assert "name: String! @join__field(graph: PLATFORM)" in supergraph


# --- Against the database ------------------------------------------------------------------

SEOUL_CODES = ["11140", "11680", "11110"]  # 중구 and 강남구 get readings, 종로구 none
ENTITIES = """query($r: [_Any!]!) {
  _entities(representations: $r) {
    __typename
    ... on District { code airQuality { pm25 { value grade readings } pm10 { value } } }
  }
}"""


def representations() -> list[dict[str, str]]:
    # New dicts for every request: strawberry pops `__typename` from each representation.
    return [{"__typename": "District", "code": code} for code in SEOUL_CODES]


@pytest.fixture(scope="module")
async def pool(migrated_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(migrated_url, Settings.from_env())
    await seed_rollups(pool)
    yield pool
    await pool.close()


async def seed_rollups(pool: asyncpg.Pool) -> None:
    """A minute of PM2.5 and PM10 rollups from five vehicles in one cell of 중구 and one
    of 강남구 (straight into sensor_rollups: the join is under test, not the ingest)."""
    size = len(queries.by_name())
    bucket = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
    for code, pm in (("11140", 20.0), ("11680", 40.0)):
        cells = await queries.district_cells(pool, code)
        assert cells
        n, total, squares = [0] * size, [0.0] * size, [0.0] * size
        low, high = [0.0] * size, [0.0] * size
        for name, value in (("pm2_5", pm), ("pm10", pm * 1.6)):
            i = queries.metric(name).id
            n[i], total[i], squares[i] = 5, 5 * value, 5 * value * value
            low[i] = high[i] = value
        await pool.execute(
            "INSERT INTO sensor_rollups (cell, bucket, n, sum, sum_sq, min, max, vehicles)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            cells[0], bucket, n, total, squares, low, high, [1, 2, 3, 4, 5],
        )  # fmt: skip


def context(pool: Any) -> Context:
    """A request's context with the sensors domain's state, as a hub process holds it."""
    sensors = SensorsState(SensorsSettings(), ResultCache(0), RollupCache(0), LiveReadings())
    return Context(connection=None, db=pool, caller=ANONYMOUS, states={SensorsState: sensors})  # type: ignore[arg-type]


async def run(schema: strawberry.federation.Schema, query: str, pool: Any, **variables: Any):
    result = await schema.execute(query, variable_values=variables, context_value=context(pool))
    assert result.errors is None, result.errors
    assert result.data is not None
    return result.data


@pytest.mark.db
async def test_sensors_resolves_districts_by_reference_as_the_hub_answers(
    pool: asyncpg.Pool,
) -> None:
    hub = build_schema(domains.select(None))
    one = await run(
        hub, '{ district(code: "11680") { name airQuality { pm25 { value grade readings } } } }',
        pool,
    )  # fmt: skip
    assert one["district"]["name"] == "강남구"
    assert one["district"]["airQuality"]["pm25"] == {"value": 40.0, "grade": "BAD", "readings": 5}
    listed = await run(
        hub,
        '{ districts(province: "11") { code airQuality { pm25 { value grade readings } '
        "pm10 { value } } } }",
        pool,
    )
    by_code = {d["code"]: d for d in listed["districts"]}
    assert by_code["11140"]["airQuality"]["pm25"]["value"] == 20.0
    assert by_code["11110"]["airQuality"] is None

    sensors = build_schema(domains.select("sensors"))
    entities = await run(sensors, ENTITIES, pool, r=representations())
    assert entities["_entities"] == [
        {"__typename": "District", **by_code[code]} for code in SEOUL_CODES
    ]
    # The hub resolves the same representations through platform's resolve_reference.
    assert (await run(hub, ENTITIES, pool, r=representations())) == entities


async def test_sensors_resolves_references_without_the_database() -> None:
    # resolve_reference makes a District from its key: no query, however many districts.
    representations = [{"__typename": "District", "code": f"{11000 + i}"} for i in range(50)]
    data = await run(
        build_schema(domains.select("sensors")),
        "query($r: [_Any!]!) { _entities(representations: $r) { ... on District { code } } }",
        None,
        r=representations,
    )
    assert [e["code"] for e in data["_entities"]] == [r["code"] for r in representations]
