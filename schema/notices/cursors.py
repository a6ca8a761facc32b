"""The sort keys the notices domain's cursors hold (schema/pagination.py), read back.

A cursor is opaque to apps, but one they made up must be refused as their mistake
(BAD_USER_INPUT) before it reaches PostgreSQL: each part is checked to be what this
domain put there, a time exactly as `time_key` wrote it, an id of its kind.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from hub.core.errors import BadUserInput
from schema.pagination import decode_cursor

BIGINT = 2**63


def time_key(at: datetime) -> str:
    """A timestamp as a cursor holds it: UTC, to the microsecond."""
    return at.astimezone(UTC).isoformat()


def delivery(cursor: str | None, argument: str = "after") -> int | None:
    """The delivery id of an inbox cursor (InboxNotice.cursor, an inbox edge's)."""
    if cursor is None:
        return None
    (value,) = decode_cursor(cursor, 1, argument)
    with _reading(argument):
        return _bigint(value)


def time_and_uuid(cursor: str | None, argument: str = "after") -> tuple[datetime, uuid.UUID] | None:
    """The (time, uuid) of a cursor made of both."""
    if cursor is None:
        return None
    at, key = decode_cursor(cursor, 2, argument)
    with _reading(argument):
        return _time(at), _uuid(key)


def time_and_id(cursor: str | None, argument: str = "after") -> tuple[datetime, int] | None:
    """The (time, bigint id) of a cursor made of both."""
    if cursor is None:
        return None
    at, key = decode_cursor(cursor, 2, argument)
    with _reading(argument):
        return _time(at), _bigint(key)


@contextmanager
def _reading(argument: str) -> Iterator[None]:
    try:
        yield
    except ValueError:
        raise BadUserInput(
            f"'{argument}' is not a cursor of this list: pass a page's endCursor as it came",
            argument=argument,
        ) from None


def _time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError(value)
    at = datetime.fromisoformat(value)
    if at.tzinfo is None or time_key(at) != value:  # another zone or spelling: not ours
        raise ValueError(value)
    return at


def _uuid(value: Any) -> uuid.UUID:
    if not isinstance(value, str):
        raise ValueError(value)
    return uuid.UUID(value)


def _bigint(value: Any) -> int:
    if type(value) is not int or not 0 < value < BIGINT:
        raise ValueError(value)
    return value
