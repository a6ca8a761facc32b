"""GraphQL execution with plain fields completed directly and no reference cycle left.

graphql-core builds a resolve info, checks for awaitables and dispatches completion for
every field of every object in a result. For a field that just reads an attribute (a
heat-map cell's `cell` and `value`, an aggregate's `mean`), that bookkeeping is nearly all
its cost: executing a 30-cell heat map took 26-42% less time without it for the leaves
alone (docs/architecture.md). Here such fields are read and serialized as graphql-core
would: leaves one by one, and whole objects whose selection holds nothing but plain
fields. Anything else, and anything unusual (a null where none may be, a value that does
not serialize, an error, `@defer`), goes through graphql-core's own path, which then
reports it as usual. Once a response is built, the executor lets go of what tied it to
itself (`build_response`), so reference counting frees the finished request.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from graphql import (
    ExecutionResult,
    FragmentSpreadNode,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    Undefined,
    is_leaf_type,
    is_object_type,
)
from graphql.pyutils import is_awaitable
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.field import StrawberryField


@dataclass(frozen=True, slots=True)
class PlainField:
    """A field strawberry resolves by reading an attribute (no resolver, no arguments, no
    field extension such as the scope guard), of a scalar, enum or object type."""

    resolve: Callable[..., Any]
    read: Callable[[Any], Any]  # what `resolve` returns, from the source alone
    serialize: Callable[[Any], Any] | None  # None: an object type
    object_type: GraphQLObjectType | None
    nullable: bool


PlainFields = dict[tuple[str, str], PlainField]


@dataclass(frozen=True, slots=True)
class Selection:
    """A selection on one object type that holds nothing but plain fields and
    `__typename` (its field None); nested objects carry their own selection."""

    type_name: str
    fields: tuple[tuple[str, PlainField | None, Selection | None], ...]


# What a direct completion returns where graphql-core's path must decide (a null where
# none may be, a value that does not serialize, an error).
UNDECIDED: Any = object()

_tables: WeakKeyDictionary[GraphQLSchema, PlainFields] = WeakKeyDictionary()


def plain_fields(schema: GraphQLSchema) -> PlainFields:
    """The plain fields of the schema's object types, by (type name, field name)."""
    table = _tables.get(schema)
    if table is not None:
        return table
    table = {}
    for type_name, graphql_type in schema.type_map.items():
        if type_name.startswith("__") or not is_object_type(graphql_type):
            continue
        for field_name, field in graphql_type.fields.items():
            definition = (field.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
            # strawberry's resolver for basic fields, which never looks at the info
            reads = getattr(field.resolve, "__name__", "") == "_get_basic_result"
            nullable = not isinstance(field.type, GraphQLNonNull)
            named = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
            if not isinstance(definition, StrawberryField) or field.args:
                continue
            if not (definition.is_basic_field and reads):
                continue
            read = _reader(definition, field.resolve)
            if is_leaf_type(named):
                plain = PlainField(field.resolve, read, named.coerce_output_value, None, nullable)
            elif is_object_type(named) and named.is_type_of is None:
                plain = PlainField(field.resolve, read, None, named, nullable)
            else:
                continue
            table[(type_name, field_name)] = plain
    _tables[schema] = table
    return table


class PlainFieldsExecution(StrawberryGraphQLCoreExecutionContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.plain_fields = plain_fields(self.schema)
        # (object type, id of its field details list) -> (that list, its selection)
        self._selections: dict[tuple[GraphQLObjectType, int], tuple[Any, Selection | None]] = {}

    def build_response(self, data: dict[str, Any] | None) -> Any:
        """The response, and the executor's one reference cycle broken once nothing is
        deferred: its resolve-info helpers hold bound methods of the executor. The cycle
        kept each request (context, HTTP request, variables, collected fields) alive until
        the garbage collector came by, so collections came every hundred or so requests
        and took 5-15 ms each under load; now reference counting frees them at once."""
        response = super().build_response(data)
        # Resolvers still running in the background (siblings of a null that bubbled up
        # to the root) may yet use the helpers: then the collector frees the request.
        if isinstance(response, ExecutionResult) and not self.background_futures:
            # graphql-core types the helpers as always there; dropping them is the point.
            self.async_helpers = None  # type: ignore[assignment]
        return response

    def execute_field(
        self,
        parent_type: Any,
        source: Any,
        field_details_list: Any,
        path: Any,
        position_context: Any,
    ) -> Any:
        node = field_details_list[0].node
        plain = self.plain_fields.get((parent_type.name, node.name.value))
        if (
            plain is not None
            and plain.serialize is not None
            and not node.arguments
            and self._unwrapped(plain)
        ):
            completed = _leaf(plain, source)
            if completed is not UNDECIDED:
                return completed
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )

    def complete_list_value(
        self,
        return_type: GraphQLList[Any],
        field_details_list: Any,
        info: Any,
        path: Any,
        result: Any,
        position_context: Any,
    ) -> Any:
        """A list of plain objects in one pass, without graphql-core's work per item."""
        item_type = return_type.of_type
        nullable = not isinstance(item_type, GraphQLNonNull)
        named = item_type if nullable else item_type.of_type
        if (
            isinstance(result, list)
            and is_object_type(named)
            and named.is_type_of is None
            and not _streamed(field_details_list)
        ):
            selection = self._selection(named, field_details_list)
            if selection is not None:
                completed = _objects(selection, result, nullable)
                if completed is not UNDECIDED:
                    return completed
        return super().complete_list_value(
            return_type, field_details_list, info, path, result, position_context
        )

    def complete_object_value(
        self,
        return_type: GraphQLObjectType,
        field_details_list: Any,
        info: Any,
        path: Any,
        result: Any,
        position_context: Any,
    ) -> Any:
        if return_type.is_type_of is None:
            selection = self._selection(return_type, field_details_list)
            if selection is not None:
                completed = _object(selection, result)
                if completed is not UNDECIDED:
                    return completed
        return super().complete_object_value(
            return_type, field_details_list, info, path, result, position_context
        )

    def _selection(
        self, object_type: GraphQLObjectType, field_details_list: Any
    ) -> Selection | None:
        """The selection on `object_type` if every field in it is plain; worked out once
        per field group and request, as graphql-core collects subfields, and once for all
        requests where nothing in it can change from one request to the next."""
        key = (object_type, id(field_details_list))
        cached = self._selections.get(key)
        if cached is not None:
            return cached[1]
        shared = self._shared_key(object_type, field_details_list)
        if shared is not None and (known := _SHARED_SELECTIONS.get(shared)) is not None:
            self._selections[key] = (field_details_list, known[1])
            return known[1]
        selection = self._new_selection(object_type, field_details_list)
        self._selections[key] = (field_details_list, selection)  # the list kept alive
        if shared is not None and self._static(field_details_list):
            nodes = tuple(details.node for details in field_details_list)
            _SHARED_SELECTIONS[shared] = (nodes, selection)  # the nodes kept alive
            if len(_SHARED_SELECTIONS) > SHARED_SELECTIONS:
                del _SHARED_SELECTIONS[next(iter(_SHARED_SELECTIONS))]
        return selection

    def _shared_key(
        self, object_type: GraphQLObjectType, field_details_list: Any
    ) -> tuple[GraphQLObjectType, tuple[int, ...]] | None:
        """The key of a selection among all requests: the type and the field nodes of the
        (cached, shared) document; None where this request's execution differs (a field
        resolver wrapped by middleware, deferred or fragment-variable fields)."""
        manager = self.middleware_manager
        if manager is not None and manager.middlewares:
            return None
        if any(
            d.defer_usage is not None or d.fragment_variable_values is not None
            for d in field_details_list
        ):
            return None
        return object_type, tuple(id(details.node) for details in field_details_list)

    def _static(self, field_details_list: Any) -> bool:
        """No directive anywhere under these fields (`@skip`/`@include` with a variable
        would make the selection depend on the request's variables)."""
        pending = [details.node.selection_set for details in field_details_list]
        seen: set[str] = set()
        while pending:
            selection_set = pending.pop()
            for node in selection_set.selections if selection_set else ():
                if node.directives:
                    return False
                if isinstance(node, FragmentSpreadNode):
                    name = node.name.value
                    fragment = self.fragment_definitions.get(name)
                    if fragment is None or fragment.directives:
                        return False
                    if name not in seen:
                        seen.add(name)
                        pending.append(fragment.selection_set)
                else:
                    pending.append(node.selection_set)
        return True

    def _new_selection(
        self, object_type: GraphQLObjectType, field_details_list: Any
    ) -> Selection | None:
        collected = self.collect_subfields(object_type, field_details_list)
        selection: Selection | None = None
        if not collected.new_defer_usages and not collected.forbidden_directive_instances:
            entries = []
            for response_name, details in collected.grouped_field_set.items():
                entry = self._entry(object_type, response_name, details)
                if entry is None:
                    break
                entries.append(entry)
            else:
                selection = Selection(object_type.name, tuple(entries))
        return selection

    def _entry(
        self, object_type: GraphQLObjectType, response_name: str, details: Any
    ) -> tuple[str, PlainField | None, Selection | None] | None:
        node = details[0].node
        if node.arguments or any(
            d.defer_usage is not None or d.fragment_variable_values is not None for d in details
        ):
            return None
        if node.name.value == "__typename":
            return (response_name, None, None)
        plain = self.plain_fields.get((object_type.name, node.name.value))
        if plain is None or not self._unwrapped(plain):
            return None
        if plain.object_type is None:
            return (response_name, plain, None)
        nested = self._selection(plain.object_type, details)
        return None if nested is None else (response_name, plain, nested)

    def _unwrapped(self, plain: PlainField) -> bool:
        """No schema extension wraps the field's resolver (it would expect to be called)."""
        manager = self.middleware_manager
        return manager is None or manager.get_field_resolver(plain.resolve) is plain.resolve


# Selections shared by all requests, by object type and the ids of their field nodes, each
# with those nodes (kept alive, so that no other node takes their ids); oldest dropped first.
SHARED_SELECTIONS = 4096
_SHARED_SELECTIONS: dict[
    tuple[GraphQLObjectType, tuple[int, ...]], tuple[tuple[Any, ...], Selection | None]
] = {}

# Types a value of which is never an error or an awaitable (the common leaves).
_DATA_TYPES = frozenset({str, int, float, bool, list, dict, tuple})


def _error_or_awaitable(value: Any) -> bool:
    """graphql-core reports an exception returned as a value, and awaits an awaitable."""
    return type(value) not in _DATA_TYPES and (isinstance(value, Exception) or is_awaitable(value))


def _reader(definition: StrawberryField, resolve: Callable[..., Any]) -> Callable[[Any], Any]:
    """The attribute read itself where strawberry's default resolver is `getattr` (its
    default): `resolve` gets there through three Python calls and a new list and dict
    each time, for every leaf of every item of a list."""
    if definition.default_resolver is getattr:
        return operator.attrgetter(definition.python_name)
    return lambda source: resolve(source, None)


def _leaf(plain: PlainField, source: Any) -> Any:
    try:
        value = plain.read(source)
        if value is None:
            return None if plain.nullable else UNDECIDED
        if _error_or_awaitable(value):
            return UNDECIDED
        # A leaf plan always has `serialize` (only objects have None): not checked
        # again here, on the hottest path.
        serialized = plain.serialize(value)  # type: ignore[misc]
    except Exception:
        return UNDECIDED
    return UNDECIDED if serialized is None or serialized is Undefined else serialized


def _streamed(field_details_list: Any) -> bool:
    return any(
        directive.name.value == "stream"
        for details in field_details_list
        for directive in details.node.directives or ()
    )


def _objects(selection: Selection, items: list[Any], nullable: bool) -> Any:
    completed = []
    for item in items:
        value = _nested(selection, item, nullable)
        if value is UNDECIDED:
            return UNDECIDED
        completed.append(value)
    return completed


def _object(selection: Selection, source: Any) -> Any:
    completed: dict[str, Any] = {}
    for response_name, plain, nested in selection.fields:
        if plain is None:
            value: Any = selection.type_name
        elif nested is None:
            value = _leaf(plain, source)
        else:
            try:
                inner = plain.read(source)
            except Exception:
                return UNDECIDED
            value = _nested(nested, inner, plain.nullable)
        if value is UNDECIDED:
            return UNDECIDED
        completed[response_name] = value
    return completed


def _nested(selection: Selection, value: Any, nullable: bool) -> Any:
    """An object inside a list or another object: null where it may be."""
    if value is None:
        return None if nullable else UNDECIDED
    if _error_or_awaitable(value):
        return UNDECIDED
    return _object(selection, value)
