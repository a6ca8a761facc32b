"""GraphQL execution with plain leaf fields completed directly.

graphql-core builds a resolve info, checks for awaitables and dispatches completion for
every field of every object in a result. For a leaf that just reads an attribute (a
heat-map cell's `cell`, an aggregate's `mean`), that bookkeeping is nearly all its cost:
executing a 30-cell heat map took 26-42% less time without it, and the hub spent 10-20%
less CPU per cached heat-map request over HTTP (docs/architecture.md). Here such a
field is read and serialized as graphql-core would;
anything else, and anything unusual (a null, a value that does not serialize, an error),
goes through graphql-core's own path, which then reports it as usual.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from weakref import WeakKeyDictionary

from graphql import GraphQLNonNull, GraphQLSchema, Undefined, is_leaf_type, is_object_type
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.field import StrawberryField

# (type name, field name) -> (resolver, serializer)
PlainLeaves = dict[tuple[str, str], tuple[Callable[..., Any], Callable[[Any], Any]]]

_tables: WeakKeyDictionary[GraphQLSchema, PlainLeaves] = WeakKeyDictionary()


def plain_leaves(schema: GraphQLSchema) -> PlainLeaves:
    """Fields of object types that strawberry resolves by reading an attribute (no
    resolver, no arguments, no field extensions such as the scope guard) and whose type
    is a scalar or an enum."""
    table = _tables.get(schema)
    if table is not None:
        return table
    table = {}
    for type_name, graphql_type in schema.type_map.items():
        if type_name.startswith("__") or not is_object_type(graphql_type):
            continue
        for field_name, field in graphql_type.fields.items():
            definition = (field.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
            basic = isinstance(definition, StrawberryField) and definition.is_basic_field
            # strawberry's resolver for basic fields, which never looks at the info
            reads = getattr(field.resolve, "__name__", "") == "_get_basic_result"
            leaf = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
            if basic and reads and not field.args and is_leaf_type(leaf):
                table[(type_name, field_name)] = (field.resolve, leaf.coerce_output_value)
    _tables[schema] = table
    return table


class PlainLeavesExecution(StrawberryGraphQLCoreExecutionContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.plain_leaves = plain_leaves(self.schema)

    def execute_field(  # type: ignore[override]
        self,
        parent_type: Any,
        source: Any,
        field_details_list: Any,
        path: Any,
        position_context: Any,
    ) -> Any:
        node = field_details_list[0].node
        plain = self.plain_leaves.get((parent_type.name, node.name.value))
        if plain is not None and not node.arguments:
            resolve, serialize = plain
            manager = self.middleware_manager  # schema extensions that wrap resolvers
            if manager is None or manager.get_field_resolver(resolve) is resolve:
                try:
                    value = resolve(source, None)
                    if value is not None:
                        serialized = serialize(value)
                        if serialized is not None and serialized is not Undefined:
                            return serialized
                except Exception:  # noqa: S110 (graphql-core's path reports it)
                    pass
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )
