"""Fine-dust warnings from taxi readings, end to end: readings go through the broker and
the ingest worker into the sensors' rollups, the sources worker reads a district's hour
from them, and citizens who chose the warning for that district get it at their app's
webhook — once per episode, however often the worker looks."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from h3.api import basic_int as h3

from resolvers.notices.from_sensors import FineDust
from resolvers.notices.quiet import KST
from resolvers.notices.settings import NoticesSettings
from resolvers.sensors import queries
from resolvers.sensors.message import H3_RESOLUTION
from resolvers.sensors.rollup_cache import RollupCache
from schema.notices.source_polls import accept, follow
from schema.notices.sources import Poll
from schema.notices.state import hours_of
from tests.notices.helpers import App, Citizen, World, notices_world
from tests.sensors.helpers import message, new_topic, partner, produce, register, wait_ingested
from tests.sensors.helpers import workers as ingesting

pytestmark = pytest.mark.db

JUNG, JONGNO = "11140", "11110"
PLACE = {JUNG: (37.5636, 126.9834), JONGNO: (37.5735, 126.9780)}  # 명동, 광화문 북쪽
VEHICLES = 5  # above k-anonymity (3)


def minutes(first: int, last: int) -> range:
    """Minutes before the readings' `now`, from `first` to `last` minutes ago (both taken)."""
    return range(first, last - 1, -1)


# What the taxis measure: 중구 bad for the last 70 minutes; 종로구 bad for 20 minutes four
# hours ago, clean in between, and bad again for the last 40 minutes.
READINGS = [
    (JUNG, minutes(70, 1), 48.0),
    (JONGNO, minutes(240, 221), 60.0),
    (JONGNO, minutes(180, 151), 10.0),
    (JONGNO, minutes(40, 1), 52.0),
]


@dataclass
class Dust:
    world: World
    now: datetime  # the minute the readings were made up to


@pytest.fixture(scope="module")
async def dust(migrated_url: str, kafka_bootstrap: str) -> AsyncIterator[Dust]:
    """The hub and its notices worker, with the readings above ingested."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    async with notices_world(migrated_url, kafka_bootstrap) as found:
        tag = uuid.uuid4().hex[:6]
        fleets = {
            district: [
                (f"u-{tag}-{district}-{i}", f"car-{tag}-{district}-{i}") for i in range(VEHICLES)
            ]
            for district in PLACE
        }  # taxis of each district's own
        owner = await partner(found.pool)
        for fleet in fleets.values():
            await register(found.pool, owner, fleet)
        values = []
        for district, span, pm25 in READINGS:
            lat, lng, fleet = *PLACE[district], fleets[district]
            for ago in span:
                at = now - timedelta(minutes=ago, seconds=-10)
                for device, vehicle in fleet:
                    values.append(
                        (vehicle.encode(), message(device, vehicle, at, lat, lng, {"pm2_5": pm25}))
                    )
        topic, group = new_topic(), f"g-{tag}"
        await produce(kafka_bootstrap, topic, values)
        async with ingesting(migrated_url, kafka_bootstrap, topic, group):
            await wait_ingested(found.pool, kafka_bootstrap, topic, group)
        yield Dust(found, now)


async def chose(world: World, app: App, district: str) -> Citizen:
    citizen = await world.citizen(app)
    await world.data(
        citizen.token,
        """mutation($d: String!) {
             optInNotices(types: ["fine_dust_warning"], districtCode: $d) { districtCode } }""",
        d=district,
    )
    return citizen


async def test_the_places_lie_in_their_districts(dust: Dust) -> None:
    for district, (lat, lng) in PLACE.items():
        cells = await queries.district_cells(dust.world.pool, district)
        assert cells and h3.latlng_to_cell(lat, lng, H3_RESOLUTION) in cells


async def test_a_district_bad_for_an_hour_is_warned_once_per_episode(dust: Dust) -> None:
    world, now = dust.world, dust.now
    app = await world.app()
    in_jung, in_jongno = await chose(world, app, JUNG), await chose(world, app, JONGNO)
    fine_dust = FineDust(world.pool, RollupCache(64 * 2**20), k=3)
    hours = hours_of(world.settings.section(NoticesSettings))

    # The worker as it looked three and a half hours ago, and two hours and a half ago.
    first = await fine_dust.due(now - timedelta(minutes=215))
    assert [(n.district_code, n.params["pm25"]) for n in first] == [(JONGNO, 60)]
    assert await accept(world.pool, first, hours, "sensors") == 1
    assert await fine_dust.due(now - timedelta(minutes=214)) == []  # the same episode
    assert await fine_dust.due(now - timedelta(minutes=160)) == []  # clean

    # Now, as the worker runs: every look after the first finds nothing new.
    stop = asyncio.Event()
    poll = Poll("sensors", 0.1, fine_dust.due)
    looking = asyncio.create_task(follow(world.pool, [poll], hours, stop))
    await asyncio.sleep(1.5)
    stop.set()
    await looking
    await world.settled()

    [jung] = app.receiver.of(in_jung.user_id)
    assert jung["noticeType"] == "fine_dust_warning" and jung["urgent"]
    assert jung["params"] == {"district": "서울특별시 중구", "pm25": 48}
    assert jung["body"]["ko"] == (
        "서울특별시 중구의 초미세먼지(PM2.5)가 한 시간 동안 나쁨 수준(48㎍/㎥)입니다."
    )
    assert jung["body"]["en"] == "PM2.5 in Jung-gu, Seoul has been bad for an hour (48 µg/m³)."
    episodes = app.receiver.of(in_jongno.user_id)
    assert [n["params"]["pm25"] for n in episodes] == [60, 52]
    keys = await world.pool.fetch(
        "SELECT dedupe_key FROM notices WHERE type_code = 'fine_dust_warning' ORDER BY accepted_at"
    )
    began = [now - timedelta(minutes=ago) for ago in (239, 69, 39)]
    assert sorted(row["dedupe_key"] for row in keys) == sorted(
        f"event/sensors/pm25-{code}-{at.astimezone(KST):%Y%m%d%H}"
        for code, at in ((JONGNO, began[0]), (JUNG, began[1]), (JONGNO, began[2]))
    )
    assert app.receiver.repeats == 0
