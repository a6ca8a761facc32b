"""Public messages on taxi-top displays: what a city operator publishes and withdraws.

A message has Korean and English text, a priority, an area (displays_area.py) and a time
window. The targeting worker (displays_targeting.py) sends it to the units inside the area;
the units acknowledge; coverage (displays_coverage.py) counts what they showed.
"""

from __future__ import annotations

import json
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from hub.core.domain import ScopeInfo
from hub.core.errors import BadUserInput, Forbidden, NotFound
from resolvers.notices.displays_area import Area, expand

OPERATE = ScopeInfo(
    "notices:display",
    "택시 표시기에 공공 메시지를 게시·철회하고, 어느 차량에 표시되었는지 봅니다.",
    "Publish and withdraw public messages on taxi-top displays; see which units showed them.",
)
DISPLAY_SCOPES = (OPERATE,)

# Higher outranks lower: a unit shows the highest-ranked messages it holds.
RANKS = {"EMERGENCY": 4, "MISSING_PERSON": 3, "WARNING": 2, "INFORMATION": 1}
MAX_TEXT_KO = 120
MAX_TEXT_EN = 240
MAX_WINDOW = timedelta(days=7)
MAX_MINUTES = MAX_WINDOW // timedelta(minutes=1)
MAX_LEAD = timedelta(days=30)
MAX_KEY = 200


@dataclass(frozen=True)
class DisplayMessage:
    message_id: uuid.UUID
    publisher: str
    text_ko: str
    text_en: str
    priority: str
    area_kind: str
    district_code: str | None
    area_cells: list[int]  # compacted
    cell_count: int
    starts_at: datetime
    ends_at: datetime
    created_at: datetime
    withdrawn_at: datetime | None

    @property
    def rank(self) -> int:
        return RANKS[self.priority]

    def cells(self) -> frozenset[int]:
        return expand(self.area_cells)

    def status(self, now: datetime) -> str:
        if self.withdrawn_at is not None:
            return "WITHDRAWN"
        if now < self.starts_at:
            return "SCHEDULED"
        return "ACTIVE" if now < self.ends_at else "ENDED"


@dataclass(frozen=True)
class NewMessage:
    idempotency_key: str
    text_ko: str
    text_en: str
    priority: str
    starts_at: datetime | None
    ends_at: datetime | None
    duration_minutes: int | None = None  # instead of ends_at: from the start

    def request(self, area: Area) -> dict[str, Any]:
        """What identifies the request, for a key sent again (as sent: a duration from
        now is the same request when it comes again later)."""
        given = {} if self.duration_minutes is None else {"duration_minutes": self.duration_minutes}
        return {
            **given,
            "text_ko": self.text_ko,
            "text_en": self.text_en,
            "priority": self.priority,
            "area_kind": area.kind,
            "district_code": area.district_code,
            "area_cells": [str(c) for c in area.compacted],
            "starts_at": None if self.starts_at is None else self.starts_at.isoformat(),
            "ends_at": None if self.ends_at is None else self.ends_at.isoformat(),
        }


class IdempotencyKeyReused(BadUserInput):
    code = "IDEMPOTENCY_KEY_REUSED"


_COLUMNS = ", ".join(DisplayMessage.__dataclass_fields__)


def _message(row: asyncpg.Record) -> DisplayMessage:
    return DisplayMessage(**{field: row[field] for field in DisplayMessage.__dataclass_fields__})


def _text(value: str, limit: int, argument: str) -> str:
    text = unicodedata.normalize("NFC", value.strip())
    if not text:
        raise BadUserInput(f"{argument} is empty", argument=argument)
    if len(text) > limit:
        raise BadUserInput(
            f"{argument} has {len(text)} characters; a display shows at most {limit}",
            argument=argument,
        )
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise BadUserInput(f"{argument} has control characters", argument=argument)
    return text


def check(new: NewMessage, now: datetime) -> tuple[str, str, datetime, datetime]:
    """The texts and window as stored; raise BadUserInput for what must change."""
    if not 1 <= len(new.idempotency_key) <= MAX_KEY:
        raise BadUserInput(f"idempotencyKey is 1-{MAX_KEY} characters", argument="idempotencyKey")
    if new.priority not in RANKS:
        raise BadUserInput(f"priority is one of {', '.join(RANKS)}", argument="priority")
    starts = new.starts_at or now
    if (new.ends_at is None) == (new.duration_minutes is None):
        raise BadUserInput("give exactly one of endsAt or durationMinutes", argument="endsAt")
    if new.duration_minutes is not None:
        if not 1 <= new.duration_minutes <= MAX_MINUTES:
            raise BadUserInput(
                f"durationMinutes is 1-{MAX_MINUTES} ({MAX_WINDOW.days} days)",
                argument="durationMinutes",
            )
        ends = starts + timedelta(minutes=new.duration_minutes)
    else:
        assert new.ends_at is not None
        ends = new.ends_at
    for name, t in (("startsAt", starts), ("endsAt", ends)):
        if t.tzinfo is None:
            raise BadUserInput(f"{name} needs a UTC offset", argument=name)
    if ends <= max(starts, now):
        raise BadUserInput("endsAt must be after startsAt and in the future", argument="endsAt")
    if ends - starts > MAX_WINDOW:
        raise BadUserInput(f"a window is at most {MAX_WINDOW.days} days", argument="endsAt")
    if starts - now > MAX_LEAD:
        raise BadUserInput(f"startsAt is at most {MAX_LEAD.days} days ahead", argument="startsAt")
    return (
        _text(new.text_ko, MAX_TEXT_KO, "textKo"),
        _text(new.text_en, MAX_TEXT_EN, "textEn"),
        starts,
        ends,
    )


async def publish(
    pool: asyncpg.Pool, publisher: str, new: NewMessage, area: Area
) -> tuple[DisplayMessage, bool]:
    """The message, and whether it is new; the same key with the same request answers the
    message stored the first time, with another request IDEMPOTENCY_KEY_REUSED."""
    request = new.request(area)
    found = await _by_key(pool, publisher, new.idempotency_key, request)
    if found is not None:
        return found, False
    text_ko, text_en, starts, ends = check(new, datetime.now(UTC))
    row = await pool.fetchrow(
        f"INSERT INTO display_messages (message_id, publisher, idempotency_key, request,"
        " text_ko, text_en, priority, area_kind, district_code, area_cells, cell_count,"
        " starts_at, ends_at) VALUES ($1, $2, $3, $4::text::jsonb, $5, $6, $7, $8, $9, $10,"
        " $11, $12, $13) ON CONFLICT (publisher, idempotency_key) DO NOTHING"
        f" RETURNING {_COLUMNS}",
        uuid.uuid4(),
        publisher,
        new.idempotency_key,
        json.dumps(request, sort_keys=True),
        text_ko,
        text_en,
        new.priority,
        area.kind,
        area.district_code,
        area.compacted,
        len(area.cells),
        starts,
        ends,
    )
    if row is not None:
        return _message(row), True
    found = await _by_key(pool, publisher, new.idempotency_key, request)  # a concurrent twin
    assert found is not None
    return found, False


async def _by_key(
    pool: asyncpg.Pool, publisher: str, key: str, request: dict[str, Any]
) -> DisplayMessage | None:
    row = await pool.fetchrow(
        f"SELECT {_COLUMNS}, request::text AS request FROM display_messages"
        " WHERE publisher = $1 AND idempotency_key = $2",
        publisher,
        key,
    )
    if row is None:
        return None
    if json.loads(row["request"]) != request:
        raise IdempotencyKeyReused(
            "idempotencyKey was used for another display message: use a new key",
            argument="idempotencyKey",
        )
    return _message(row)


async def withdraw(pool: asyncpg.Pool, publisher: str, message_id: uuid.UUID) -> DisplayMessage:
    """Stop a message early (again: no change). Only its publisher may."""
    row = await pool.fetchrow(
        "UPDATE display_messages SET withdrawn_at = coalesce(withdrawn_at, now())"
        f" WHERE message_id = $1 AND publisher = $2 RETURNING {_COLUMNS}",
        message_id,
        publisher,
    )
    if row is not None:
        return _message(row)
    if await by_id(pool, message_id) is None:
        raise NotFound(f"no display message {message_id}")
    raise Forbidden("only the client that published a display message may withdraw it")


async def by_id(pool: asyncpg.Pool, message_id: uuid.UUID) -> DisplayMessage | None:
    row = await pool.fetchrow(
        f"SELECT {_COLUMNS} FROM display_messages WHERE message_id = $1", message_id
    )
    return None if row is None else _message(row)


async def listing(
    pool: asyncpg.Pool,
    *,
    current_only: bool,
    first: int,
    after: tuple[datetime, uuid.UUID] | None = None,
) -> list[DisplayMessage]:
    """Newest first; `current_only`: those scheduled or showing now; `after` a message's
    (created_at, message_id): only older ones (keyset paging, the id breaks ties)."""
    rows = await pool.fetch(
        f"SELECT {_COLUMNS} FROM display_messages"
        " WHERE ($1::bool IS FALSE OR (withdrawn_at IS NULL AND ends_at > now()))"
        " AND ($2::timestamptz IS NULL OR (created_at, message_id) < ($2, $3::uuid))"
        " ORDER BY created_at DESC, message_id DESC LIMIT $4",
        current_only,
        *(after or (None, None)),
        first,
    )
    return [_message(row) for row in rows]


async def open_messages(conn: asyncpg.Connection | asyncpg.Pool) -> list[DisplayMessage]:
    """Messages not over: withdrawn ones and those past their window are not among them."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM display_messages WHERE withdrawn_at IS NULL AND ends_at > now()"
    )
    return [_message(row) for row in rows]


async def by_ids(
    conn: asyncpg.Connection | asyncpg.Pool, ids: list[uuid.UUID]
) -> list[DisplayMessage]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM display_messages WHERE message_id = ANY($1::uuid[])", ids
    )
    return [_message(row) for row in rows]
