"""The waste tests' hub, one per test module: a payments world (the card gateway and the
tax system sandboxed) with the city's tag keys made, as `ieum waste tags-issue` makes them
before any tag is scanned, and a city staff token."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from resolvers.waste.tags import keys
from tests.payments.helpers import World, payments_world


@pytest.fixture(scope="module")
async def world(migrated_url: str, kafka_bootstrap: str) -> AsyncIterator[World]:
    async with payments_world(migrated_url, kafka_bootstrap) as world:
        for algorithm in (keys.QR, keys.NFC):
            await keys.current(world.pool, keys.secret(world.settings), algorithm)
        yield world


@pytest.fixture(scope="module")
async def city(world: World) -> str:
    return await world.clients.token("waste:city")
