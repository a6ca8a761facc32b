"""Where units are, for domains that act on units by place (the notices domain's displays).

A position is a stored reading without its values: `latest_positions` reads each unit's
last one from PostgreSQL (where a worker starts from), `live_feed.positions` takes them
from the live feed as they are stored (what it follows).
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec


class Position(msgspec.Struct, frozen=True, array_like=True):
    """Its fields are the first of a live-feed row's, in order (`live_feed.Row`): the feed
    decodes straight into positions, leaving the rest of each row unread."""

    device_id: str
    vehicle_id: str
    ts: datetime
    lat: float
    lng: float
    cell: int  # H3 resolution 9


async def latest_positions(
    conn: asyncpg.Pool | asyncpg.Connection, since: datetime
) -> list[Position]:
    """Each unit's latest position at or after `since`, by device id."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (device_id) device_id, vehicle_id, ts, lat, lng, cell"
        " FROM sensor_readings WHERE ts >= $1 ORDER BY device_id, ts DESC",
        since,
    )
    return [Position(**dict(row)) for row in rows]
