"""Notices from fine dust: a district's PM2.5 at the bad grade for an hour.

Every few minutes, for each district a citizen chose `fine_dust_warning` for, the mean
PM2.5 of the last hour over the district's cells is read from the sensors' rollups through
their Python API, as `District.airQuality` reads it (k-anonymous). At 나쁨 or worse (the
Ministry of Environment's grades: above 35 µg/m³) the district is in an episode, which
began the minute after the last one whose trailing hour was below 나쁨 (or had no
readings), looked for over the last 12 hours.

An episode is warned once. Its notice's key is the district and the Korean hour it
began, `event/sensors/pm25-<district>-<YYYYMMDDHH>`, which every worker works out alike
from the same rollups, so two workers or a restart make one notice; the air dipping below
the grade and back within that hour is the same episode. An episode longer than the
lookback is warned again only if no warning went out during it (a worker down all along).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import accumulate

import asyncpg

from resolvers.notices.quiet import KST
from resolvers.notices.store import NewNotice
from resolvers.platform import districts
from resolvers.sensors import queries
from resolvers.sensors.rollup_cache import RollupCache

DOMAIN = "sensors"
TYPE = "fine_dust_warning"
METRIC = "pm2_5"
BAD = frozenset(queries.GRADES[2:])  # 나쁨, 매우나쁨
WINDOW = queries.AIR_QUALITY_WINDOW
LOOKBACK = timedelta(hours=12)
MINUTE = timedelta(minutes=1)


class FineDust:
    """Districts' fine dust becomes warnings: `due()` gives the episodes not warned yet."""

    def __init__(self, pool: asyncpg.Pool, rollups: RollupCache, k: int) -> None:
        self.pool = pool
        self.rollups = rollups  # the worker's own: one metric, the watched districts
        self.k = k
        self.metric = queries.metric(METRIC)

    async def due(self, now: datetime | None = None) -> list[NewNotice]:
        now = now or datetime.now(UTC)
        rows = await self.pool.fetch(
            "SELECT DISTINCT district_code FROM notice_choices"
            " WHERE type_code = $1 AND withdrawn_at IS NULL AND district_code IS NOT NULL"
            " ORDER BY district_code",
            TYPE,
        )
        found = [await self.warning(row["district_code"], now) for row in rows]
        return [notice for notice in found if notice is not None]

    async def warning(self, code: str, now: datetime) -> NewNotice | None:
        """The district's warning if an episode is going on at `now` and was not warned."""
        cells = await queries.district_cells(self.pool, code)
        if not cells:
            return None
        start, end = queries.bucket_bounds(now - WINDOW, now)
        hour = await queries.window(self.pool, self.rollups, cells, self.metric, start, end, self.k)
        if hour is None or hour.vehicles < self.k or queries.grade(METRIC, hour.mean) not in BAD:
            return None
        began = await self._began(cells, end)
        if began is None:  # bad all along the lookback
            if await self._warned_since(code, now - LOOKBACK):
                return None
            began = end - LOOKBACK
        notice = await self._notice(code, began, round(hour.mean))
        made = await self.pool.fetchval(
            "SELECT 1 FROM notices WHERE dedupe_key = $1", notice.dedupe_key
        )
        return None if made else notice

    async def _began(self, cells: list[int], end: datetime) -> datetime | None:
        """When the episode going on at `end` began: the minute after the last one whose
        trailing hour was not bad; None if every one in the lookback was bad."""
        start = end - LOOKBACK - WINDOW
        series = await queries.series(
            self.pool, self.rollups, cells, self.metric, start, end, MINUTE, self.k
        )
        size, width = (end - start) // MINUTE, WINDOW // MINUTE
        counts, totals = [0] * size, [0.0] * size
        for at, stats in series:
            index = (at - start) // MINUTE
            counts[index], totals[index] = stats.count, stats.total
        count, total = [0, *accumulate(counts)], [0.0, *accumulate(totals)]
        for j in range(size - 1, width, -1):  # the hour [j - width, j) in minutes
            n = count[j] - count[j - width]
            if n == 0 or queries.grade(METRIC, (total[j] - total[j - width]) / n) not in BAD:
                return start + (j + 1) * MINUTE
        return None

    async def _warned_since(self, code: str, since: datetime) -> bool:
        found = await self.pool.fetchval(
            "SELECT 1 FROM notices WHERE type_code = $1 AND source = $2"
            " AND district_code = $3 AND accepted_at >= $4 LIMIT 1",
            TYPE,
            DOMAIN,
            code,
            since,
        )
        return bool(found)

    async def _notice(self, code: str, began: datetime, pm25: int) -> NewNotice:
        district = await districts.district_loader(self.pool).load(code)
        ko = f"{district.province} {district.name}" if district else code
        en = f"{district.name_en}, {district.province_en}" if district else code
        return NewNotice.from_event(
            DOMAIN,
            f"pm25-{code}-{began.astimezone(KST):%Y%m%d%H}",
            type_code=TYPE,
            district_code=code,
            params={"district": ko, "pm25": pm25},
            params_en={"district": en},
        )
