"""DateTime variables read with `datetime.fromisoformat`, falling back to dateutil."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import strawberry
from dateutil.parser import isoparse
from strawberry.schema.types.base_scalars import DateTimeDefinition

from hub import domains
from schema import scalars
from schema.builder import build_schema


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-01T09:30:00Z",
        "2026-12-01T09:30:00+09:00",
        "2026-12-01T09:30:00.123456+0900",
        "2026-12-01T09:30:00.123456789Z",  # finer than microseconds: truncated by both
        "20261201T0930Z",
        "2026-12-01",
        "2026-12-01T24:00:00Z",  # the end of a day: only dateutil reads it
    ],
)
def test_the_same_instant_as_dateutil_reads(text: str) -> None:
    parsed, before = scalars.parse_datetime(text), isoparse(text)
    assert parsed == before
    assert parsed.utcoffset() == before.utcoffset()
    assert parsed.isoformat() == before.isoformat()


@strawberry.type
class Query:
    @strawberry.field
    def later(self, at: datetime) -> datetime:
        return at + timedelta(hours=1)


def run(schema: strawberry.Schema, value: object) -> strawberry.types.ExecutionResult:
    return schema.execute_sync(
        "query($at: DateTime!) { later(at: $at) }", variable_values={"at": value}
    )


@pytest.mark.parametrize("value", ["2026-13-01T00:00:00Z", "yesterday", "", 1764581400])
def test_a_bad_value_is_refused_in_the_words_strawberry_used(value: object) -> None:
    ours = run(strawberry.Schema(Query, scalar_overrides=scalars.OVERRIDES), value)
    theirs = run(strawberry.Schema(Query), value)
    assert ours.errors and theirs.errors
    assert [e.message for e in ours.errors] == [e.message for e in theirs.errors]


def test_the_hubs_schema_reads_datetimes_with_it() -> None:
    hub_schema = build_schema(domains.select(None))._schema
    parse = hub_schema.type_map["DateTime"].parse_value  # type: ignore[attr-defined]
    assert parse is scalars.DATETIME.parse_value
    assert scalars.DATETIME.parse_value is not None
    assert parse is not DateTimeDefinition.parse_value
    assert scalars.DATETIME.parse_value("2026-12-01T00:30:00Z").tzinfo == UTC
    nine = timezone(timedelta(hours=9))
    assert scalars.DATETIME.parse_value("2026-12-01T00:30+09:00").tzinfo == nine
