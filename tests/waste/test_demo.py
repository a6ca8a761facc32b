"""`ieum serve`'s waste demo data: a labelled restaurant the demo partner runs and collects
from, loaded again on every start without making anything twice."""

from __future__ import annotations

import asyncio
import csv
import uuid
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from auth import demo as demo_auth
from hub.core import db
from hub.core.domain import DemoEnv
from hub.core.servers import Servers
from hub.core.settings import Settings
from resolvers.waste import collectors, registry, tariffs
from resolvers.waste.tags import keys
from resolvers.waste.tags.verify import QrTag, Verifier
from schema.waste import demo

pytestmark = pytest.mark.db


@pytest.fixture
async def pool(migrated_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(migrated_url, Settings.from_env())
    yield pool
    await pool.close()


def env(pool: asyncpg.Pool, data_dir: Path, migrated_url: str, client_id: str) -> DemoEnv:
    def background(work: Coroutine[Any, Any, object], name: str) -> None:
        work.close()  # the waste demo starts nothing

    return DemoEnv(
        pool=pool,
        settings=Settings.from_env(data_dir=data_dir),
        servers=Servers(migrated_url, ""),
        client_id=client_id,
        stopping=asyncio.Event(),
        background=background,
    )


def labels(out: Path) -> list[dict[str, str]]:
    with (out / "labels.csv").open(encoding="utf-8") as file:
        return list(csv.DictReader(file))


async def test_the_demo_restaurant_is_loaded_once_with_labels_that_verify(
    pool: asyncpg.Pool, migrated_url: str, tmp_path: Path
) -> None:
    partner = (await demo_auth.load(pool, "http://127.0.0.1")).client_id
    first = env(pool, tmp_path / "data", migrated_url, partner)

    lines = await demo.demo(first)
    again = await demo.demo(first)

    assert again == lines and str(demo.labels_dir(first)) in lines[-1]
    business = await registry.generator_by_no(pool, demo.BUSINESS_NO)
    assert business is not None and business.owner == registry.Owner(partner, None)
    [site] = await registry.sites_of(pool, business.generator_id)
    assert site.district_code == demo.DISTRICT and str(site.site_id) in lines[0]
    bins = await registry.bins_of(pool, site.site_id)
    assert sorted(b.volume_litres for b in bins) == sorted(demo.BINS)
    assert [t.unit_price for t in await tariffs.tariffs(pool, demo.DISTRICT, None)] != []
    assert demo.DISTRICT in (await collectors.of_client(pool, partner)).districts

    printed = labels(demo.labels_dir(first))
    assert {uuid.UUID(row["bin_id"]) for row in printed} == {b.bin_id for b in bins}
    live = await pool.fetchval(
        "SELECT count(*) FROM waste_tags WHERE bin_id = ANY($1) AND revoked_at IS NULL",
        [b.bin_id for b in bins],
    )
    assert live == len(bins)  # the second start issued none
    verifier = Verifier(pool, keys.secret(first.settings))
    for row in printed:
        verified = await verifier.verify(QrTag(row["qr_text"]))
        assert str(verified.bin_id) == row["bin_id"] and verified.district_code == demo.DISTRICT
