"""One way to page through lists that grow: Relay cursor connections.

A list that can grow (readings, pickups, payments, bookings, notices …) is a
`Connection` with `edges { cursor node }`, `nodes` and `pageInfo`, taken with `first`
(how many) and `after` (the `endCursor` of the page before). A cursor is opaque to apps:
the base64url of the sort key of its item, so the next page starts right after it
(keyset paging: stable while items arrive, no OFFSET). Every domain's connection reads the
same, so one client helper pages through all of them.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any, Generic, TypeVar

import orjson
import strawberry

from hub.core.errors import BadUserInput

T = TypeVar("T")
Row = TypeVar("Row")

CURSOR_VERSION = 1
_NOT_OURS = "'{argument}' is not a cursor of this list: pass a page's endCursor as it came"


@strawberry.federation.type(
    shareable=True,  # every subgraph with a connection declares it, the same
    description="Where a page of a connection stands (Relay cursor connections).",
)
class PageInfo:
    has_next_page: bool = strawberry.field(description="More items follow: ask with `after`.")
    has_previous_page: bool = strawberry.field(description="The page began after a cursor.")
    start_cursor: str | None = strawberry.field(description="The first item's cursor.")
    end_cursor: str | None = strawberry.field(
        description="The last item's cursor: pass it as `after` for the next page."
    )


@strawberry.type(description="An item of a connection, with its cursor.")
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type(description="A page of a list that grows; page on with `after: endCursor`.")
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo

    @strawberry.field(description="The page's items without their cursors.")
    def nodes(self) -> list[T]:
        return [edge.node for edge in self.edges]


def encode_cursor(*key: Any) -> str:
    """The opaque cursor of a sort key (strings, numbers, booleans, None)."""
    raw = orjson.dumps([CURSOR_VERSION, *key])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str, arity: int, argument: str = "after") -> list[Any]:
    """The sort key a cursor holds; a cursor this hub did not give is BAD_USER_INPUT."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = orjson.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeEncodeError):
        value = None
    if not (isinstance(value, list) and len(value) == arity + 1 and value[0] == CURSOR_VERSION):
        raise BadUserInput(_NOT_OURS.format(argument=argument), argument=argument)
    return value[1:]


def read_cursor(
    cursor: str | None, *parts: Callable[[Any], Any], argument: str = "after"
) -> tuple[Any, ...] | None:
    """The typed sort key of a cursor (None for the first page): each part read by its
    reader (`aware_time`, `day`, `uuid_part`, `text`); a cursor made up, or of another list,
    is BAD_USER_INPUT before any of it reaches PostgreSQL."""
    if cursor is None:
        return None
    values = decode_cursor(cursor, len(parts), argument)
    try:
        return tuple(read(value) for read, value in zip(parts, values, strict=True))
    except (TypeError, ValueError, AttributeError):
        raise BadUserInput(_NOT_OURS.format(argument=argument), argument=argument) from None


def text(value: Any) -> str:
    if not isinstance(value, str) or "\x00" in value:
        raise ValueError(value)
    return value


def aware_time(value: Any) -> datetime:
    """A time with its zone, as UTC (a time past the last UTC instant is refused here,
    not by PostgreSQL)."""
    at = datetime.fromisoformat(text(value))
    if at.tzinfo is None:
        raise ValueError(value)
    try:
        return at.astimezone(UTC)
    except OverflowError:
        raise ValueError(value) from None


def day(value: Any) -> date:
    return date.fromisoformat(text(value))


def uuid_part(value: Any) -> uuid.UUID:
    return uuid.UUID(text(value))


def check_first(first: int, maximum: int, argument: str = "first") -> None:
    if not 1 <= first <= maximum:
        raise BadUserInput(f"'{argument}' must be between 1 and {maximum}", argument=argument)


def page_of(
    rows: Sequence[Row],
    first: int,
    *,
    node: Callable[[Row], T],
    key: Callable[[Row], tuple[Any, ...]],
    after: str | None = None,
) -> Connection[T]:
    """A connection from up to `first + 1` rows in page order (fetch one more than asked:
    its presence says a next page exists). `key` gives a row's sort key, as its cursor."""
    shown = rows[:first]
    edges = [Edge(cursor=encode_cursor(*key(row)), node=node(row)) for row in shown]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=len(rows) > first,
            has_previous_page=after is not None,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
    )
