"""Prepared operations: a document the hub has parsed and validated once runs again
without strawberry's per-request pipeline.

Apps send the same few documents over and over. For each, strawberry builds an execution
context, eight extensions' hook contexts, a middleware manager and a result: about a
third of a point lookup's time in the hub (docs/architecture.md). Once the document cache
holds a document that validated (schema.extensions.DocumentCache records it as
`Prepared`), an operation of it runs here: the per-request checks the extensions make
(no NUL in the variables, the cost the variables give), graphql-core's execution with
the hub's executor, then what the extensions do to the result (errors logged, made
public, counted).

Any other request, and any that a check would refuse, gets None from `runnable`: the
caller then goes through strawberry, which answers it as usual. So this path only ever
answers requests that would have run, and answers them the same way.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from graphql import ExecutionResult, GraphQLError, GraphQLSchema, execute
from strawberry.execution import optimized_is_awaitable
from strawberry.types.graphql import OperationType
from strawberry.utils.await_maybe import await_maybe

from hub.core.context import Context
from schema import cost
from schema.extensions import (
    DOCUMENTS,
    MAX_TOKENS,
    Prepared,
    log_errors,
    nul_variable,
    public_error,
    record_operation,
)

# What runs over HTTP POST; a subscription goes through strawberry, which refuses it there.
POST_OPERATIONS = frozenset({OperationType.QUERY, OperationType.MUTATION})


def parse_options(settings: object) -> tuple[tuple[str, Any], ...]:
    """The options documents are parsed and cached with (part of DocumentCache's key)."""
    return (("max_tokens", getattr(settings, "graphql_max_tokens", MAX_TOKENS)),)


def prepared(
    schema: GraphQLSchema, query: str, operation_name: str | None, settings: object
) -> Prepared | None:
    """The cached, valid operation `query` and `operation_name` name, if this schema ran
    it before."""
    entry = DOCUMENTS.get(query, parse_options(settings))
    if entry is None:
        return None
    found = entry.prepared.get((id(schema), operation_name))
    return found if found is not None and found.schema() is schema else None


def runnable(
    schema: GraphQLSchema,
    query: str,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
    settings: object,
) -> Prepared | None:
    """The prepared operation if it may run as asked over POST: a query or a mutation, no
    variable holding a NUL, and within the cost limits with these variables."""
    operation = prepared(schema, query, operation_name, settings)
    if operation is None or operation.operation_type not in POST_OPERATIONS:
        return None
    if variables and nul_variable(variables) is not None:
        return None
    limits = (
        getattr(settings, "max_query_cost", cost.MAX_COST),
        getattr(settings, "max_entity_representations", cost.MAX_REPRESENTATIONS),
    )
    if not variables and limits in operation.within:
        return operation  # its cost cannot change
    if cost.refusal(schema, operation.document, variables, operation.operation_name, *limits):
        return None
    if not variables:
        operation.within.add(limits)
    return operation


async def run(
    schema: GraphQLSchema,
    operation: Prepared,
    variables: dict[str, Any] | None,
    context: Context,
    executor_class: Any,
) -> ExecutionResult:
    """Execute a runnable operation as strawberry would: errors logged as they came, then
    counted, then made public."""
    started = time.perf_counter()
    try:
        result: ExecutionResult = await await_maybe(
            execute(
                schema,
                operation.document,
                variable_values=variables,
                operation_name=operation.operation_name,
                context_value=context,
                is_awaitable=optimized_is_awaitable,  # type: ignore[arg-type]
                executor_class=executor_class,
            )
        )
    except Exception as exc:  # as strawberry: graphql-core itself failed, not a field
        error = exc if isinstance(exc, GraphQLError) else GraphQLError(str(exc), original_error=exc)
        result = ExecutionResult(data=None, errors=[error])
    errors = result.errors
    if errors:
        log_errors(errors)  # the schema's process_errors
    record_operation(operation.operation_name, operation.operation_type.value, started, errors)
    if errors:
        result.errors = [public_error(error, context.db) for error in errors]
    return result
