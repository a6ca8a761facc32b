"""The hub's own domains whose news becomes notices.

A domain that announces on an events topic gives a `Source`: its topic and a `translate`
function in `resolvers/notices/from_<domain>.py` that reads one event (and, if it must,
that domain's Python API) and returns the notice to accept, or None. A domain that only
records gives a `Poll`: a function there that asks its Python API what is new, run every
so often by the sources worker (schema/notices/source_polls.py). Either way a notice's
dedupe key comes from what it reports (the event, the pickup, the district's episode),
so reading something twice makes one notice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from hub.core.settings import Settings
from resolvers.notices import events, from_mobility, from_payments, from_sensors, from_waste
from resolvers.notices.store import NewNotice
from resolvers.payments.settings import PaymentsSettings
from resolvers.sensors.rollup_cache import RollupCache
from resolvers.sensors.settings import SensorsSettings

FINE_DUST_SECONDS = 180.0  # an hour's mean moves slowly; a warning is at most 3 min late
COLLECTIONS_SECONDS = 2.0
TRAIN_CHANGES_SECONDS = 2.0  # the mobility worker itself asks the operator every 5 min


def sources(settings: Settings) -> list[events.Source]:
    return [
        events.Source(
            from_payments.DOMAIN,
            settings.section(PaymentsSettings).events_topic,
            from_payments.translate,
        ),
    ]


@dataclass(frozen=True)
class Poll:
    domain: str
    seconds: float  # between two looks
    due: Callable[[], Awaitable[list[NewNotice]]]  # the notices newly due


def polls(settings: Settings, pool: asyncpg.Pool) -> list[Poll]:
    sensors = settings.section(SensorsSettings)
    dust = from_sensors.FineDust(
        pool, RollupCache(sensors.rollup_memory_mb * 2**20), sensors.k_anonymity
    )
    return [
        Poll(from_sensors.DOMAIN, FINE_DUST_SECONDS, dust.due),
        Poll(from_waste.DOMAIN, COLLECTIONS_SECONDS, from_waste.Collections(pool).due),
        Poll(from_mobility.DOMAIN, TRAIN_CHANGES_SECONDS, from_mobility.TrainChanges(pool).due),
    ]
