"""Assemble any subset of the domains into one Apollo Federation v2 subgraph schema."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import strawberry
from graphql import GraphQLError, GraphQLSchema, is_object_type
from strawberry.extensions import AddValidationRules
from strawberry.federation.schema_directives import Key
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext, get_object_definition
from strawberry.types.base import StrawberryObjectDefinition
from strawberry.types.field import StrawberryField

from auth.graphql import ScopeGuard, guard_declared_scopes
from hub.core.domain import Domain
from schema import scalars
from schema.cost import QueryCost, SubscriptionsPerClient
from schema.execution import PlainFieldsExecution
from schema.extensions import (
    CurrentCaller,
    DocumentCache,
    NoNulStrings,
    NoNulVariables,
    OperationMetrics,
    PublicErrors,
    log_errors,
    watch_subscription_tokens,
)
from schema.public import scopes_sentence

# A version @theguild/federation-composition understands, and >= 2.5 for @requiresScopes.
FEDERATION_VERSION: Literal["2.7"] = "2.7"


class EntityError(ValueError):
    """Two domains declare the same field of a shared entity."""


def shared_entities(
    types: Iterable[type], config: StrawberryConfig
) -> tuple[list[type], dict[type, list[StrawberryField]]]:
    """An entity (a type with @key) that several domains declare under one GraphQL name is
    one type in a build, as it is one entity across subgraphs: the first declaration (the
    domain registered first) owns it, the later ones add their fields; only key fields may
    be declared twice. Returns the types to give the schema (owners only) and the fields
    of each owner that others extend."""
    kept: list[type] = []
    parts: dict[str, list[StrawberryObjectDefinition]] = {}
    for cls in types:
        definition = get_object_definition(cls)
        if definition is None or not _keys(definition):
            kept.append(cls)
            continue
        declared = parts.setdefault(definition.name, [])
        if not declared:
            kept.append(cls)
        declared.append(definition)
    named = config.name_converter.from_field
    fields_of: dict[type, list[StrawberryField]] = {}
    for owner, *extensions in parts.values():
        if not extensions:
            continue
        fields = list(owner.fields)
        seen = {named(field) for field in fields}
        for extension in extensions:
            keys = _keys(extension)
            for field in extension.fields:
                name = named(field)
                if name in seen and name in keys:
                    continue  # a key field, declared by every part
                if name in seen:
                    raise EntityError(
                        f"{owner.name}.{name} is declared by both {owner.origin.__module__} "
                        f"and {extension.origin.__module__}"
                    )
                seen.add(name)
                fields.append(field)
        fields_of[owner.origin] = fields
    return kept, fields_of


def _keys(definition: StrawberryObjectDefinition) -> set[str]:
    """The top-level fields named by the type's @key directives."""
    return {
        name
        for d in definition.directives or ()
        if isinstance(d, Key)
        for name in re.sub(r"\{[^{}]*\}", " ", str(d.fields)).split()
    }


class HubSchema(strawberry.federation.Schema):
    """A federation schema in which a shared entity has the fields of every domain in the
    build. `get_fields` is strawberry's hook for the fields a schema shows of a type
    (strawberry 0.218); the composed field lists live on the schema, never on the domains'
    classes, so builds of different domains in one process stay apart."""

    def __init__(self, *, fields_of: Mapping[type, list[StrawberryField]], **kwargs: Any):
        self._fields_of = fields_of  # read while super().__init__ converts the types
        super().__init__(**kwargs)
        watch_subscription_tokens(self._schema)
        describe_scopes(self._schema)

    def get_fields(self, type_definition: StrawberryObjectDefinition) -> list[StrawberryField]:
        return self._fields_of.get(type_definition.origin) or super().get_fields(type_definition)

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """strawberry logs every error at ERROR with its traceback; here only ours are."""
        log_errors(errors)


def describe_scopes(schema: GraphQLSchema) -> None:
    """Each gated field says in its description which scopes it needs, so an app developer
    reading GraphiQL's docs sees it, not only a gateway reading the directive."""
    for named in schema.type_map.values():
        for field in getattr(named, "fields", {}).values() if is_object_type(named) else ():
            definition = (field.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
            guards = [e for e in getattr(definition, "extensions", ()) if isinstance(e, ScopeGuard)]
            if not guards:
                continue
            sentence = scopes_sentence(guards[-1].required)
            text = (field.description or "").rstrip()
            if not text.endswith(sentence):
                field.description = f"{text}\n\n{sentence}" if text else sentence


def build_schema(domains: Sequence[Domain]) -> strawberry.federation.Schema:
    """One Apollo Federation v2 subgraph schema of the given domains' types, in the order
    they are installed: the first domain declaring a shared entity owns it (its
    resolvers and resolve_reference serve the whole hub), later ones add fields."""

    def merged(kind: str) -> type | None:
        parts = tuple(part for d in domains if (part := getattr(d, kind)) is not None)
        return merge_types(kind.capitalize(), parts) if parts else None

    query = merged("query")
    assert query is not None, "every subgraph has at least one query field"
    mutation, subscription = merged("mutation"), merged("subscription")
    declared = [t for d in domains for t in d.types]
    guard_declared_scopes([r for r in (query, mutation, subscription) if r] + declared)
    config = StrawberryConfig()
    types, fields_of = shared_entities(declared, config)
    return HubSchema(
        fields_of=fields_of,
        config=config,
        query=query,
        mutation=mutation,
        subscription=subscription,
        types=types,
        federation_version=FEDERATION_VERSION,
        execution_context_class=PlainFieldsExecution,
        scalar_overrides=scalars.OVERRIDES,
        extensions=[
            PublicErrors,
            OperationMetrics,
            CurrentCaller,
            NoNulVariables,
            lambda: AddValidationRules([NoNulStrings]),
            QueryCost,
            SubscriptionsPerClient,
            DocumentCache,  # parses and validates: checks that refuse a document go before
        ],
    )
