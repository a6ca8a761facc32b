"""Plain fields completed directly give exactly what graphql-core's own path gives, errors
included, and the hub's hot fields do take the direct path."""

from __future__ import annotations

import asyncio
import gc
import math
from collections.abc import Awaitable
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import pytest
import strawberry
from graphql import execute as execute_document
from graphql import parse
from graphql.execution.executor import Executor
from strawberry.extensions import ValidationCache
from strawberry.scalars import JSON
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from hub import domains
from schema.builder import build_schema
from schema.execution import PlainFieldsExecution, plain_fields
from schema.extensions import DocumentCache


@strawberry.enum
class Grade(Enum):
    GOOD = "GOOD"
    BAD = "BAD"


@strawberry.type
class Stats:
    mean: float
    label: str | None
    exact: int  # one item's stats break the promise with a None


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
    stats: Stats
    spare: Stats | None  # None for odd items
    broken: Stats  # None for item 2, though the schema promises one

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
        stats=Stats(mean=number * 1.5, label=None if number == 1 else "x", exact=number),
        spare=None
        if number % 2
        else Stats(mean=math.nan if number == 4 else 0.5, label="s", exact=1),
        broken=None
        if number == 2
        else Stats(mean=1.0, label=None, exact=None if number == 5 else 2),  # type: ignore[arg-type]
    )


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item]:
        return [item(n) for n in range(6)]

    @strawberry.field
    def one(self) -> Item:
        return item(1)

    @strawberry.field
    def maybe_stats(self) -> list[Stats | None]:
        return [Stats(mean=1.0, label="a", exact=1), None, Stats(mean=2.0, label=None, exact=2)]

    @strawberry.field
    def sure_stats(self) -> list[Stats]:
        return [Stats(mean=1.0, label="a", exact=1), None]  # type: ignore[list-item]


QUERIES = [
    "{ items { name count ratio ok grade at shape ident maybe tags } }",
    "{ items { name required } }",
    "{ items { n: name again: name c: count } one { shout(times: 2) shout } }",
    "query($skip: Boolean!) { items { name @skip(if: $skip) count @include(if: $skip) } }",
    "{ items { ...Parts __typename } } fragment Parts on Item { grade at }",
    "{ one { ratio count } items { ratio } }",
    "{ items { name stats { mean label exact } } one { stats { mean } } }",
    "{ items { spare { mean label } } }",  # a null object, and a NaN inside one
    "{ items { broken { mean exact } } }",  # a null where none may be, at two depths
    "{ items { s: stats { __typename m: mean } spare { ...S } } } fragment S on Stats { exact }",
    "query($skip: Boolean!) { items { stats { mean @skip(if: $skip) exact } shout } }",
    "{ maybeStats { mean label } }",  # null items where they may be
    "{ sureStats { mean } }",  # and where they may not
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
    assert execute(PlainFieldsExecution, query) == execute(
        StrawberryGraphQLCoreExecutionContext, query
    )


def test_errors_still_reported_on_the_direct_path() -> None:
    nulls = execute(PlainFieldsExecution, "{ items { required } }")["errors"]
    assert nulls == [
        ("Cannot return null for non-nullable field Item.required.", ("items", 4, "required"))
    ]
    nan = execute(PlainFieldsExecution, "{ items { ratio } }")["errors"]
    assert nan == [("Float cannot represent non numeric value: nan", ("items", 3, "ratio"))]
    broken = execute(PlainFieldsExecution, "{ items { name broken { exact } } }")
    assert broken["errors"] == [
        ("Cannot return null for non-nullable field Item.broken.", ("items", 2, "broken"))
    ]
    assert broken["data"] is None  # the null bubbles up to the nullable root
    inside = execute(PlainFieldsExecution, "{ items { spare { mean } } }")
    assert inside["errors"] == [
        ("Float cannot represent non numeric value: nan", ("items", 4, "spare", "mean"))
    ]
    spares = [item["spare"] for item in inside["data"]["items"]]
    assert spares == [{"mean": 0.5}, None, {"mean": 0.5}, None, None, None]


def test_the_hubs_hot_fields_take_the_direct_path() -> None:
    """If strawberry changes how it resolves plain fields, the direct path would silently
    stop applying: this says so."""
    table = plain_fields(build_schema(domains.select(None))._schema)
    for field in [("HeatCell", "cell"), ("Aggregate", "mean"), ("SeriesPoint", "bucket")]:
        assert field in table and table[field].serialize is not None
    for field in [("HeatCell", "value"), ("SeriesPoint", "value")]:  # objects
        assert field in table and table[field].object_type is not None
    # a resolver of our own, a field with arguments and a list are not plain leaves
    assert ("District", "boundary") not in table
    assert ("District", "h3Cells") not in table
    assert ("District", "legacyCodes") not in table


def test_the_items_leaves_take_the_direct_path() -> None:
    """Else the comparisons above compare graphql-core's path with itself."""
    table = plain_fields(strawberry.Schema(Query)._schema)
    leaves = ["name", "count", "ratio", "ok", "grade", "at", "shape", "ident", "maybe", "required"]
    objects = ["stats", "spare", "broken"]
    assert {("Item", name) for name in leaves + objects} <= set(table)
    assert ("Item", "shout") not in table and ("Item", "tags") not in table


def test_plain_objects_take_the_direct_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lists of objects whose selection is all plain are completed without graphql-core's
    path; one field with a resolver sends each object (not its plain children) there."""
    completed_by_graphql_core: list[str] = []
    original = Executor.complete_object_value

    def counting(self: Executor, return_type: Any, *args: Any) -> Any:
        completed_by_graphql_core.append(return_type.name)
        return original(self, return_type, *args)

    monkeypatch.setattr(Executor, "complete_object_value", counting)
    items_by_graphql_core = []
    original_item = Executor.complete_list_item_value
    monkeypatch.setattr(
        Executor,
        "complete_list_item_value",
        lambda *args: items_by_graphql_core.append(1) or original_item(*args),
    )
    result = execute(PlainFieldsExecution, "{ items { name stats { mean } } }")
    assert not result["errors"] and len(result["data"]["items"]) == 6
    assert completed_by_graphql_core == [] and items_by_graphql_core == []
    execute(PlainFieldsExecution, "{ items { shout stats { mean } } }")
    assert completed_by_graphql_core == ["Item"] * 6


async def test_an_executed_request_leaves_no_reference_cycle() -> None:
    """Reference counting frees a finished request at once; a cycle would keep it (context,
    variables, collected fields) for the garbage collector, whose passes then come often
    and pause every request in the process."""
    schema = strawberry.Schema(
        Query,
        execution_context_class=PlainFieldsExecution,
        extensions=[DocumentCache, ValidationCache],  # as the hub: parsing makes cycles
    )
    query = "query($skip: Boolean!) { items { name @skip(if: $skip) stats { mean } } }"
    await schema.execute(query, variable_values={"skip": False})  # fills the caches
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        await schema.execute(query, variable_values={"skip": False})
        schema.execute_sync(query, variable_values={"skip": True})
        gc.collect()
        left = [type(o).__name__ for o in gc.garbage]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert "PlainFieldsExecution" not in left
    assert left == []


class Missing(Exception):
    """Returned, not raised: graphql-core reports it as the field's error."""


@strawberry.type
class Odd:
    label: str
    inner: Stats | None


def done(value: object) -> asyncio.Future[object]:
    future = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


@strawberry.type
class OddQuery:
    @strawberry.field
    def errors(self) -> list[Stats]:
        return [Stats(mean=1.0, label="a", exact=1), Missing("no b")]  # type: ignore[list-item]

    @strawberry.field
    def futures(self) -> list[Stats]:
        return [done(Stats(mean=1.0, label="a", exact=1)), done(None)]  # type: ignore[list-item]

    @strawberry.field
    def odd(self) -> list[Odd]:
        return [
            Odd(label=Missing("no x"), inner=Missing("no z")),  # type: ignore[arg-type]
            Odd(label=done("hello"), inner=done(None)),  # type: ignore[arg-type]
        ]


@pytest.mark.parametrize(
    "query",
    [
        "{ errors { __typename } }",
        "{ errors { mean } }",
        "{ futures { __typename } }",
        "{ odd { label } }",
        "{ odd { inner { __typename } } }",
    ],
)
async def test_errors_and_awaitables_returned_as_values(query: str) -> None:
    """graphql-core raises an exception found as a value and awaits an awaitable; the
    direct path must not serialize them or read their attributes."""

    async def run(context: type) -> tuple[object, list[tuple[str, tuple[object, ...]]]]:
        result = await strawberry.Schema(OddQuery, execution_context_class=context).execute(query)
        return result.data, sorted((e.message, tuple(e.path or ())) for e in result.errors or ())

    assert await run(PlainFieldsExecution) == await run(StrawberryGraphQLCoreExecutionContext)


@strawberry.type
class Later:
    @strawberry.field
    async def total(self, info: strawberry.Info) -> int:
        values = await info._raw_info.async_helpers.gather([asyncio.sleep(0, 1)])
        LATE.append(values)
        return sum(values)


LATE: list[object] = []


@strawberry.type
class RacingQuery:
    @strawberry.field
    async def later(self) -> Later:
        await asyncio.sleep(0.01)
        return Later()

    @strawberry.field
    def broken(self) -> str:
        raise ValueError("boom")


async def test_work_left_running_after_the_response_keeps_its_helpers() -> None:
    """A null bubbling to the root ends the response while a sibling still runs; what it
    resolves afterwards still has graphql-core's helpers (the cycle then stays)."""
    LATE.clear()
    schema = strawberry.Schema(RacingQuery, execution_context_class=PlainFieldsExecution)
    result = await schema.execute("{ later { total } broken }")
    assert result.data is None
    for _ in range(100):
        if LATE:
            break
        await asyncio.sleep(0.01)
    assert LATE == [[1]]


def run_document(context: type, document: Any, variables: dict[str, Any]) -> dict[str, Any]:
    """One parsed document executed again and again, as the document cache hands it out."""
    schema = strawberry.Schema(Query)
    result = execute_document(
        schema._schema, document, variable_values=variables, executor_class=context
    )
    assert not isinstance(result, Awaitable)
    return {"data": result.data, "errors": [e.message for e in result.errors or ()]}


def test_a_documents_selections_are_worked_out_once_for_all_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    schema = strawberry.Schema(Query)
    document = parse("{ items { name stats { mean } } one { count } }")
    collected: list[str] = []
    original = Executor.collect_subfields

    def counting(self: Executor, return_type: Any, *args: Any) -> Any:
        collected.append(return_type.name)
        return original(self, return_type, *args)

    monkeypatch.setattr(Executor, "collect_subfields", counting)
    first = execute_document(schema._schema, document, executor_class=PlainFieldsExecution)
    assert sorted(collected) == ["Item", "Item", "Stats"]
    collected.clear()
    again = execute_document(schema._schema, document, executor_class=PlainFieldsExecution)
    assert collected == [] and again == first
    other = parse("{ items { name stats { mean } } one { count } }")  # same text, new nodes
    execute_document(schema._schema, other, executor_class=PlainFieldsExecution)
    assert sorted(collected) == ["Item", "Item", "Stats"]


@pytest.mark.parametrize(
    "query",
    [
        "query($skip: Boolean!) { items { name @skip(if: $skip) count } }",
        "query($skip: Boolean!) { items { stats { mean @include(if: $skip) exact } } }",
        "query($skip: Boolean!) { items { ...F @skip(if: $skip) count } }"
        " fragment F on Item { name }",
        "query($skip: Boolean!) { items { ...F count } }"
        " fragment F on Item { name @skip(if: $skip) }",
        "query($skip: Boolean!) { items { ... @include(if: $skip) { name } count } }",
    ],
)
def test_a_selection_that_variables_change_is_worked_out_per_request(query: str) -> None:
    """The same parsed document with other variables: each answer is graphql-core's own."""
    document = parse(query)
    for skip in (True, False, True):
        variables = {"skip": skip}
        assert run_document(PlainFieldsExecution, document, variables) == run_document(
            StrawberryGraphQLCoreExecutionContext, document, variables
        )
