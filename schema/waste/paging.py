"""The sort keys of the waste domain's connections (schema/pagination.py), read back.

A cursor is opaque to apps, but one they made up is their mistake (BAD_USER_INPUT), refused
before it reaches PostgreSQL: each part must be what these keys put there.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from resolvers.waste.pickups import Pickup
from resolvers.waste.registry import Generator, Site
from schema.pagination import aware_time, day, read_cursor, text, uuid_part


def generator_key(record: Generator) -> tuple[str, str]:
    return record.registered_at.isoformat(), str(record.generator_id)


def site_key(record: Site) -> tuple[str, str]:
    return record.name, str(record.site_id)


def pickup_key(record: Pickup) -> tuple[str, str, str]:
    return (
        record.pickup_day.isoformat(),
        record.requested_at.isoformat(),
        str(record.pickup_id),
    )


def generator_after(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    return read_cursor(cursor, aware_time, uuid_part)


def site_after(cursor: str | None) -> tuple[str, uuid.UUID] | None:
    return read_cursor(cursor, text, uuid_part)


def pickup_after(cursor: str | None) -> tuple[date, datetime, uuid.UUID] | None:
    return read_cursor(cursor, day, aware_time, uuid_part)
