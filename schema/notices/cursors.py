"""The sort keys of the notices domain's cursors: written with `time_key`, read back by
schema/pagination.py's `read_cursor` with the readers here, so a made-up cursor is
BAD_USER_INPUT before any of it reaches PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from schema.pagination import aware_time, read_cursor, uuid_part

BIGINT = 2**63


def time_key(at: datetime) -> str:
    """A timestamp as a cursor holds it: UTC, to the microsecond."""
    return at.astimezone(UTC).isoformat()


def delivery_id(value: Any) -> int:
    if type(value) is not int or not 0 < value < BIGINT:
        raise ValueError(value)
    return value


def place(cursor: str | None) -> tuple[datetime, int] | None:
    """The (release time, delivery id) of an inbox cursor (InboxNotice.cursor, an inbox
    edge's): a notice's place in the inbox."""
    return read_cursor(cursor, aware_time, delivery_id)


def time_and_uuid(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    """The (time, uuid) of a report's or a display message's cursor."""
    return read_cursor(cursor, aware_time, uuid_part)


def time_and_id(cursor: str | None) -> tuple[datetime, int] | None:
    """The (time, delivery id) of a dead letter's cursor."""
    return read_cursor(cursor, aware_time, delivery_id)
