"""The sort keys of the waste domain's connections (schema/pagination.py), read back.

A cursor is opaque to apps, but one they made up is their mistake (BAD_USER_INPUT), refused
before it reaches PostgreSQL: each part must be what these keys put there.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, TypeVar

from hub.core.errors import BadUserInput
from resolvers.waste.pickups import Pickup
from resolvers.waste.registry import Generator, Site
from schema.pagination import decode_cursor

T = TypeVar("T")
NOT_OURS = "'after' is not a cursor of this list: pass a page's endCursor as it came"


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
    if cursor is None:
        return None
    at, key = decode_cursor(cursor, 2)
    return _read(lambda: (_time(at), _uuid(key)))


def site_after(cursor: str | None) -> tuple[str, uuid.UUID] | None:
    if cursor is None:
        return None
    name, key = decode_cursor(cursor, 2)
    return _read(lambda: (_text(name), _uuid(key)))


def pickup_after(cursor: str | None) -> tuple[date, datetime, uuid.UUID] | None:
    if cursor is None:
        return None
    day, at, key = decode_cursor(cursor, 3)
    return _read(lambda: (_day(day), _time(at), _uuid(key)))


def _read(parts: Callable[[], T]) -> T:
    try:
        return parts()
    except ValueError:
        raise BadUserInput(NOT_OURS, argument="after") from None


def _text(value: Any) -> str:
    if not isinstance(value, str) or "\x00" in value:
        raise ValueError(value)
    return value


def _time(value: Any) -> datetime:
    at = datetime.fromisoformat(_text(value))
    if at.tzinfo is None:
        raise ValueError(value)
    return at


def _day(value: Any) -> date:
    return date.fromisoformat(_text(value))


def _uuid(value: Any) -> uuid.UUID:
    return uuid.UUID(_text(value))
