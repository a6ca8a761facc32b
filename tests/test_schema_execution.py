"""Plain leaf fields completed directly give exactly what graphql-core's own path gives,
errors included, and the hub's hot fields do take the direct path."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import pytest
import strawberry
from strawberry.scalars import JSON
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from schema.builder import build_schema
from schema.execution import PlainLeavesExecution, plain_leaves


@strawberry.enum
class Grade(Enum):
    GOOD = "GOOD"
    BAD = "BAD"


@strawberry.type
class Item:
    name: str
    count: int
    ratio: float
    ok: bool
    grade: Grade
    at: datetime
    shape: JSON
    ident: strawberry.ID
    maybe: str | None
    required: str  # some items break the schema's promise with a None
    tags: list[str]

    @strawberry.field
    def shout(self, times: int = 1) -> str:
        return self.name.upper() * times


def item(number: int) -> Item:
    return Item(
        name=f"item{number}",
        count=number,
        ratio=math.nan if number == 3 else number / 7,  # NaN: "cannot represent"
        ok=number % 2 == 0,
        grade=Grade.GOOD if number % 2 else Grade.BAD,
        at=datetime(2026, 11, 27, number, tzinfo=UTC),
        shape={"type": "Point", "coordinates": [127.0, 37.5 + number]},
        ident=strawberry.ID(str(number)),
        maybe=None if number % 2 else "yes",
        required=None if number == 4 else "here",  # type: ignore[arg-type]
        tags=["a", str(number)],
    )


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item]:
        return [item(n) for n in range(6)]

    @strawberry.field
    def one(self) -> Item:
        return item(1)


QUERIES = [
    "{ items { name count ratio ok grade at shape ident maybe tags } }",
    "{ items { name required } }",
    "{ items { n: name again: name c: count } one { shout(times: 2) shout } }",
    "query($skip: Boolean!) { items { name @skip(if: $skip) count @include(if: $skip) } }",
    "{ items { ...Parts __typename } } fragment Parts on Item { grade at }",
    "{ one { ratio count } items { ratio } }",
]


def execute(context: type, query: str) -> dict[str, Any]:
    schema = strawberry.Schema(Query, execution_context_class=context)
    result = schema.execute_sync(query, variable_values={"skip": True})
    return {
        "data": result.data,
        "errors": sorted((e.message, tuple(e.path or ())) for e in result.errors or ()),
    }


@pytest.mark.parametrize("query", QUERIES)
def test_same_data_and_errors_as_graphql_cores_own_path(query: str) -> None:
    assert execute(PlainLeavesExecution, query) == execute(
        StrawberryGraphQLCoreExecutionContext, query
    )


def test_errors_still_reported_on_the_direct_path() -> None:
    nulls = execute(PlainLeavesExecution, "{ items { required } }")["errors"]
    assert nulls == [
        ("Cannot return null for non-nullable field Item.required.", ("items", 4, "required"))
    ]
    nan = execute(PlainLeavesExecution, "{ items { ratio } }")["errors"]
    assert nan == [("Float cannot represent non numeric value: nan", ("items", 3, "ratio"))]


def test_the_hubs_hot_fields_take_the_direct_path() -> None:
    """If strawberry changes how it resolves plain fields, the direct path would silently
    stop applying: this says so."""
    table = plain_leaves(build_schema()._schema)
    for field in [("HeatCell", "cell"), ("Aggregate", "mean"), ("SeriesPoint", "bucket")]:
        assert field in table
    # a resolver of our own, a field with arguments and a list are not plain leaves
    assert ("District", "boundary") not in table
    assert ("District", "h3Cells") not in table
    assert ("District", "legacyCodes") not in table


def test_the_items_leaves_take_the_direct_path() -> None:
    """Else the comparisons above compare graphql-core's path with itself."""
    table = plain_leaves(strawberry.Schema(Query)._schema)
    leaves = ["name", "count", "ratio", "ok", "grade", "at", "shape", "ident", "maybe", "required"]
    assert {("Item", name) for name in leaves} <= set(table)
    assert ("Item", "shout") not in table and ("Item", "tags") not in table
