"""Query cost: the work a document asks for, estimated from its text and variables before
it is validated or run, so that a request over the budget is refused at once.

One field costs its own `weight` (1 when it has a resolver, which may read the database;
0 when it reads an attribute its parent already holds) and the cost of its selection; a
list field costs 1 and its selection's cost per item, but a list of scalars that its
parent already holds (a district's `legacyCodes`) nothing per item. A list's length
comes from the field's arguments (`first`, `last`, `limit`), from what the field declares
(`FieldCost.size`, e.g. `districts`, or a district's `h3Cells` at the resolution asked)
or else `LIST_SIZE`; a paginated field that returns one object (a page) gives its
`first` to the lists right under it. Arguments not given count with their defaults.
Aliases count each time, fragments once per use, `@skip`/`@include` as included.
Introspection lists count with this schema's own sizes, so GraphiQL's introspection
passes and a thousand aliases of it do not.

Sizes taken from arguments count at most GraphQL's largest Int (a literal beyond it is
refused by validation, after this), and a cost counts up to `COST_CEILING`: the error
says "over" it rather than a number no JSON reader keeps exact.

`_entities` also takes at most `max_representations` representations: each resolves
a reference, with no scope needed for open entities. Each must be a reference
strawberry can resolve (an object whose `__typename` names an entity type, with the
fields that type's `resolve_reference` takes), or the request is refused before it
runs: strawberry's entities resolver fails on anything else with a TypeError.

And a client holds at most `max_subscriptions` subscriptions at once in a process, over
all its sockets: each may replay stored data (`since:`) and then keeps a queue.
"""

from __future__ import annotations

import inspect
import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple
from weakref import WeakKeyDictionary

from graphql import (
    GRAPHQL_MAX_INT,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLUnionType,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    OperationDefinitionNode,
    SchemaMetaFieldDef,
    SelectionSetNode,
    TypeMetaFieldDef,
    Undefined,
    ValueNode,
    VariableNode,
    get_named_type,
    value_from_ast_untyped,
)
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.field import StrawberryField
from strawberry.types.graphql import OperationType

MAX_COST = 10_000  # settings: max_query_cost
MAX_REPRESENTATIONS = 1_000  # settings: max_entity_representations
MAX_SUBSCRIPTIONS = 20  # per client, in one process; settings: max_subscriptions_per_client
LIST_SIZE = 50  # the length assumed for a list that declares none
COST_CEILING = 1_000_000_000  # costs count up to this; any limit is below it
PAGE_ARGUMENTS = ("first", "last", "limit")
METADATA_KEY = "cost"

Arguments = Mapping[str, Any]


@dataclass(frozen=True)
class FieldCost:
    """A field's own cost, declared where the field is:
    `strawberry.field(metadata=FieldCost(size=260).metadata())`."""

    weight: int | None = None  # once per field; default 1 with a resolver, 0 without
    # Items in the list the field returns, fixed or from its arguments.
    size: int | Callable[[Arguments], int] | None = None

    def metadata(self) -> dict[str, FieldCost]:
        return {METADATA_KEY: self}


# Refusals are plain GraphQLErrors (the transports copy and format them as such), with
# the code and the limit in their extensions.


def too_costly(cost: int, limit: int) -> GraphQLError:
    reported = min(cost, COST_CEILING)
    costs = f"over {reported:,}" if reported == COST_CEILING else f"{reported:,}"
    return GraphQLError(
        f"This query costs {costs}, over the limit of {limit:,}: ask for fewer fields, "
        "aliases or list items (first:), or split it into several requests.",
        extensions={"code": "QUERY_TOO_COSTLY", "cost": reported, "limit": limit},
    )


def too_many_representations(count: int, limit: int) -> GraphQLError:
    return GraphQLError(
        f"_entities takes at most {limit:,} representations per request, got {count:,}.",
        extensions={"code": "BAD_USER_INPUT", "argument": "representations"},
    )


def not_a_reference(index: int, references: Mapping[str, EntityReference]) -> GraphQLError:
    kinds = "; ".join(
        f"{name} with {', '.join(sorted(reference.required)) or 'its fields'}"
        for name, reference in sorted(references.items())
    )
    return GraphQLError(
        f"_entities' representation {index} is not a reference to an entity: give an "
        f"object with the entity's type in __typename and its key fields: {kinds}.",
        extensions={"code": "BAD_USER_INPUT", "argument": "representations"},
    )


def too_many_subscriptions(limit: int) -> GraphQLError:
    return GraphQLError(
        f"This client already holds {limit:,} subscriptions, the most it may hold at "
        "once: end one (complete it, or close its socket) before starting another.",
        extensions={"code": "TOO_MANY_SUBSCRIPTIONS", "limit": limit},
    )


def document_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    variables: Mapping[str, Any] | None = None,
    operation_name: str | None = None,
) -> int:
    """The estimated cost of the operation that would run (0 if none can)."""
    operation = _operation(document, operation_name)
    if operation is None:
        return 0
    root = schema.get_root_type(operation.operation)
    if root is None:
        return 0
    return _Costing(schema, document, variables or {}).selections(root, operation.selection_set)


def representations(
    document: DocumentNode,
    variables: Mapping[str, Any] | None = None,
    operation_name: str | None = None,
) -> list[Any]:
    """The representations the operation's `_entities` fields are given, together (those
    in fragments on the root too), as the client sent them."""
    operation = _operation(document, operation_name)
    if operation is None:
        return []
    values = _variables(operation, variables or {})
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    given: list[Any] = []
    for node in _root_fields(operation.selection_set, fragments, set()):
        if node.name.value == "_entities":
            found = next(
                (a.value for a in node.arguments or () if a.name.value == "representations"),
                None,
            )
            value = value_from_ast_untyped(found, values) if found is not None else None
            # A single value where a list is expected is coerced to a list of one.
            given.extend(value if isinstance(value, list) else [value])
    # One missing or null is the validation's and the variables' coercion's to report.
    return [value for value in given if value is not None and value is not Undefined]


class EntityReference(NamedTuple):
    """What a representation of one entity type gives: `fields` (besides `__typename`),
    of which `required` must be there; None when strawberry builds the type from any."""

    fields: frozenset[str] | None
    required: frozenset[str]


def malformed_representation(schema: GraphQLSchema, given: list[Any]) -> GraphQLError | None:
    """The error for the first representation strawberry could not resolve, if any:
    its entities resolver passes a representation's fields to the type's
    `resolve_reference` as keyword arguments, and fails (TypeError, KeyError,
    AttributeError) on one that is not an object naming an entity type with those fields."""
    references = _entity_references(schema)
    for index, representation in enumerate(given):
        if not isinstance(representation, dict):
            return not_a_reference(index, references)
        typename = representation.get("__typename")
        reference = references.get(typename) if isinstance(typename, str) else None
        fields = set(representation) - {"__typename"}
        if (
            reference is None
            or not reference.required <= fields
            or (reference.fields is not None and not fields <= reference.fields)
        ):
            return not_a_reference(index, references)
    return None


_references: WeakKeyDictionary[GraphQLSchema, dict[str, EntityReference]] = WeakKeyDictionary()


def _entity_references(schema: GraphQLSchema) -> dict[str, EntityReference]:
    """Each entity type of the schema (a member of `_Entity`) by name, with the fields its
    representations give: the parameters of its `resolve_reference` but `info`."""
    found = _references.get(schema)
    if found is not None:
        return found
    union = schema.type_map.get("_Entity")
    members = union.types if isinstance(union, GraphQLUnionType) else ()
    found = {}
    for member in members:
        definition = (member.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
        resolve = getattr(getattr(definition, "origin", None), "resolve_reference", None)
        if resolve is None:
            found[member.name] = EntityReference(None, frozenset())
            continue
        parameters = [
            p
            for p in inspect.signature(resolve).parameters.values()
            if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and p.name != "info"
        ]
        found[member.name] = EntityReference(
            frozenset(p.name for p in parameters),
            frozenset(p.name for p in parameters if p.default is inspect.Parameter.empty),
        )
    _references[schema] = found
    return found


def _variables(operation: OperationDefinitionNode, variables: Mapping[str, Any]) -> dict[str, Any]:
    """The variables' values, with the operation's defaults for those not given."""
    values = {
        d.variable.name.value: value_from_ast_untyped(d.default_value)
        for d in operation.variable_definitions or ()
        if d.default_value is not None
    }
    return values | dict(variables)


def _root_fields(
    selection_set: SelectionSetNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    spread: set[str],
) -> Iterator[FieldNode]:
    """The fields of the root selection, those in its fragments too (each fragment once)."""
    for node in selection_set.selections:
        if isinstance(node, FieldNode):
            yield node
        elif isinstance(node, InlineFragmentNode):
            yield from _root_fields(node.selection_set, fragments, spread)
        elif isinstance(node, FragmentSpreadNode) and node.name.value not in spread:
            spread.add(node.name.value)
            fragment = fragments.get(node.name.value)
            if fragment is not None:
                yield from _root_fields(fragment.selection_set, fragments, spread)


class QueryCost(SchemaExtension):
    """Refuses a document over the cost budget, or with too many `_entities`
    representations, before it is validated: validating 1,000 aliases of one field alone
    took a second. Goes before the extension that validates (the document cache), which
    leaves a document with errors alone.

    The limits come from the settings in the request's context (`max_query_cost`,
    `max_entity_representations`) or else from the arguments."""

    def __init__(
        self, max_cost: int = MAX_COST, max_representations: int = MAX_REPRESENTATIONS
    ) -> None:
        self.max_cost = max_cost
        self.max_representations = max_representations

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and context.pre_execution_errors is None:
            error = self._refusal(document)
            if error is not None:
                context.pre_execution_errors = [error]
        yield

    def _refusal(self, document: DocumentNode) -> GraphQLError | None:
        context = self.execution_context
        settings = getattr(context.context, "settings", None)
        return refusal(
            context.schema._schema,
            document,
            context.variables,
            context.operation_name,
            getattr(settings, "max_query_cost", self.max_cost),
            getattr(settings, "max_entity_representations", self.max_representations),
        )


def refusal(
    schema: GraphQLSchema,
    document: DocumentNode,
    variables: Mapping[str, Any] | None,
    name: str | None,
    max_cost: int,
    max_representations: int,
) -> GraphQLError | None:
    """Why the operation may not run (too costly, too many or malformed representations),
    or None. A document that passed without variables is not walked again."""
    verdict = (id(schema), name, max_cost, max_representations)  # documents are shared
    if not variables and verdict in _PASSED.get(document, ()):
        return None
    given = representations(document, variables, name)
    if len(given) > max_representations:
        return too_many_representations(len(given), max_representations)
    malformed = malformed_representation(schema, given)
    if malformed is not None:
        return malformed
    cost = document_cost(schema, document, variables, name)
    if cost > max_cost or cost >= COST_CEILING:
        return too_costly(cost, max_cost)
    if not variables:
        _PASSED.setdefault(document, set()).add(verdict)
    return None


# Documents that passed, by schema, operation name and limits, when sent without variables (their
# cost cannot change): apps send the same few documents, and the document cache hands out
# the same parsed one each time, so the walk runs once per document, not per request.
_PASSED: WeakKeyDictionary[DocumentNode, set[tuple[int, str | None, int, int]]] = (
    WeakKeyDictionary()
)


_held: WeakKeyDictionary[object, Counter[str]] = WeakKeyDictionary()


class SubscriptionsPerClient(SchemaExtension):
    """A client (its OAuth client id, else its address) may hold `limit` subscriptions at
    once in this process, across all its sockets; strawberry counts only per socket.
    Counted per schema, so hubs built in one process (tests) keep apart."""

    def __init__(self, limit: int = MAX_SUBSCRIPTIONS) -> None:
        self.limit = limit
        self._holder: str | None = None

    def on_operation(self) -> Iterator[None]:
        try:
            yield
        finally:  # the subscription ended, failed, or its socket closed
            if self._holder is not None:
                held = self._held()
                held[self._holder] -= 1
                if held[self._holder] <= 0:
                    del held[self._holder]

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if (
            context.pre_execution_errors is None
            and context.graphql_document is not None
            and context.operation_type is OperationType.SUBSCRIPTION
        ):
            settings = getattr(context.context, "settings", None)
            limit = getattr(settings, "max_subscriptions_per_client", self.limit)
            holder, held = _holder(context.context), self._held()
            if held[holder] >= limit:
                context.pre_execution_errors = [too_many_subscriptions(limit)]
            else:
                held[holder] += 1
                self._holder = holder
        yield

    def _held(self) -> Counter[str]:
        return _held.setdefault(self.execution_context.schema, Counter())


def _holder(context: object) -> str:
    caller = getattr(context, "caller", None)
    client_id = getattr(caller, "client_id", None)
    if client_id is not None:
        return f"client {client_id}"
    connection = getattr(context, "connection", None)
    address = getattr(getattr(connection, "client", None), "host", None)
    return f"address {address}"


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is not None:
        return next((o for o in operations if o.name and o.name.value == name), None)
    return operations[0] if len(operations) == 1 else None


def _value(node: ValueNode, variables: Mapping[str, Any]) -> Any:
    if isinstance(node, VariableNode):
        return variables.get(node.name.value)
    if isinstance(node, IntValueNode):
        return int(node.value)
    if isinstance(node, ListValueNode):
        return [None] * len(node.values)  # only the length counts
    return value_from_ast_untyped(node, dict(variables))


class _Costing:
    """One document's costing. Fragments are costed once per type they are spread on and
    counted each time; a fragment that spreads itself counts 0 (validation refuses it)."""

    def __init__(
        self, schema: GraphQLSchema, document: DocumentNode, variables: Mapping[str, Any]
    ) -> None:
        self.schema = schema
        self.variables = variables
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.introspection = _introspection_sizes(schema)
        self._spread: dict[tuple[str, str], int] = {}
        self._open: set[str] = set()

    def selections(self, parent: GraphQLNamedType, selection_set: SelectionSetNode) -> int:
        return self._selections(parent, selection_set, None)

    def _selections(
        self, parent: GraphQLNamedType, selection_set: SelectionSetNode, page: int | None
    ) -> int:
        total = 0
        for node in selection_set.selections:
            if isinstance(node, FieldNode):
                total += self._field(parent, node, page)
            elif isinstance(node, InlineFragmentNode):
                on = self._type(node.type_condition.name.value) if node.type_condition else None
                total += self._selections(on or parent, node.selection_set, page)
            elif isinstance(node, FragmentSpreadNode):
                total += self._fragment(parent, node.name.value, page)
        return min(total, COST_CEILING)

    def _fragment(self, parent: GraphQLNamedType, name: str, page: int | None) -> int:
        fragment = self.fragments.get(name)
        if fragment is None or name in self._open:
            return 0
        on = self._type(fragment.type_condition.name.value) or parent
        key = (name, f"{on.name}/{page}")
        if key not in self._spread:
            self._open.add(name)
            self._spread[key] = self._selections(on, fragment.selection_set, page)
            self._open.discard(name)
        return self._spread[key]

    def _type(self, name: str) -> GraphQLNamedType | None:
        return self.schema.type_map.get(name)

    def _field(self, parent: GraphQLNamedType, node: FieldNode, page: int | None) -> int:
        if not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            return 0  # __typename on a union
        name = node.name.value
        field = _schema_field(self.schema, parent, name)
        if field is None:
            return 0
        declared = _declared(field)
        strawberry_field = _strawberry_field(field)
        weight = declared.weight if declared and declared.weight is not None else None
        if weight is None:
            resolves = strawberry_field is not None and strawberry_field.base_resolver is not None
            weight = 1 if resolves or name == "_entities" else 0
        arguments = {
            n: a.default_value for n, a in field.args.items() if a.default_value is not Undefined
        }
        for given in node.arguments or ():
            arguments[given.name.value] = _value(given.value, self.variables)
        paged = next((v for a in PAGE_ARGUMENTS if isinstance(v := arguments.get(a), int)), None)
        if paged is not None:
            paged = _bounded(paged)
        of = _unwrapped(field.type)
        if isinstance(of, GraphQLList):
            items = self._size(parent, name, declared, arguments, paged, page)
            inner_page = None
        else:
            items = 0
            inner_page = paged  # a page of the given size: it sizes the lists under it
        if node.selection_set is None:  # leaves: in a list, each counts if computed
            return min(weight + items * (1 if weight else 0), COST_CEILING)
        below = self._selections(get_named_type(field.type), node.selection_set, inner_page)
        cost = weight + items * (1 + below) if isinstance(of, GraphQLList) else weight + below
        return min(cost, COST_CEILING)

    def _size(
        self,
        parent: GraphQLNamedType,
        name: str,
        declared: FieldCost | None,
        arguments: Arguments,
        paged: int | None,
        page: int | None,
    ) -> int:
        if name == "_entities":
            given = arguments.get("representations")
            return len(given) if isinstance(given, list) else 1
        if paged is not None:
            return paged
        if declared is not None and declared.size is not None:
            size = declared.size
            return _bounded(size(arguments) if callable(size) else size)
        if page is not None:
            return page
        return self.introspection.get((parent.name, name), LIST_SIZE)


def _bounded(size: int) -> int:
    """A list's length from an argument, within what an Int argument can say."""
    return min(max(size, 0), GRAPHQL_MAX_INT)


def _unwrapped(type_: Any) -> Any:
    return type_.of_type if isinstance(type_, GraphQLNonNull) else type_


def _schema_field(
    schema: GraphQLSchema, parent: GraphQLObjectType | GraphQLInterfaceType, name: str
) -> GraphQLField | None:
    """The field's definition; None for __typename and for fields validation refuses."""
    if name == "__schema" and parent is schema.query_type:
        return SchemaMetaFieldDef
    if name == "__type" and parent is schema.query_type:
        return TypeMetaFieldDef
    return parent.fields.get(name)


def _strawberry_field(field: GraphQLField) -> StrawberryField | None:
    found = (field.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
    return found if isinstance(found, StrawberryField) else None


def _declared(field: GraphQLField) -> FieldCost | None:
    definition = _strawberry_field(field)
    found = definition.metadata.get(METADATA_KEY) if definition is not None else None
    return found if isinstance(found, FieldCost) else None


_sizes: WeakKeyDictionary[GraphQLSchema, dict[tuple[str, str], int]] = WeakKeyDictionary()


def _introspection_sizes(schema: GraphQLSchema) -> dict[tuple[str, str], int]:
    """The lengths of the introspection lists in this schema: all of its types and
    directives; per type or field, the mean number of its fields, values or arguments
    (the most possible types of an abstract type)."""
    found = _sizes.get(schema)
    if found is not None:
        return found
    types = list(schema.type_map.values())
    objects = [t for t in types if isinstance(t, GraphQLObjectType | GraphQLInterfaceType)]
    fields = [f for t in objects for f in t.fields.values()]
    inputs = [t for t in types if isinstance(t, GraphQLInputObjectType)]
    enums = [t for t in types if isinstance(t, GraphQLEnumType)]
    abstract = [t for t in types if isinstance(t, GraphQLInterfaceType | GraphQLUnionType)]
    directives = schema.directives
    sizes = {
        ("__Schema", "types"): len(types),
        ("__Schema", "directives"): len(directives),
        ("__Type", "fields"): _mean([len(t.fields) for t in objects]),
        ("__Type", "interfaces"): _mean([len(t.interfaces) for t in objects]),
        ("__Type", "possibleTypes"): max(
            [len(schema.get_possible_types(t)) for t in abstract], default=0
        ),
        ("__Type", "inputFields"): _mean([len(t.fields) for t in inputs]),
        ("__Type", "enumValues"): _mean([len(t.values) for t in enums]),
        ("__Field", "args"): _mean([len(f.args) for f in fields]),
        ("__Directive", "args"): _mean([len(d.args) for d in directives]),
        ("__Directive", "locations"): _mean([len(d.locations) for d in directives]),
    }
    _sizes[schema] = sizes
    return sizes


def _mean(counts: list[int]) -> int:
    return math.ceil(sum(counts) / len(counts)) if counts else 0
