"""Assemble any subset of the domains into one Apollo Federation v2 subgraph schema."""

from __future__ import annotations

from collections.abc import Sequence

import strawberry
from strawberry.extensions import ValidationCache
from strawberry.tools import merge_types

from auth.graphql import guard_declared_scopes
from hub.core.domain import Domain
from schema.execution import PlainFieldsExecution
from schema.extensions import (
    DOCUMENT_CACHE_SIZE,
    CurrentCaller,
    DocumentCache,
    OperationMetrics,
    PublicErrors,
)

# A version @theguild/federation-composition understands, and >= 2.5 for @requiresScopes.
FEDERATION_VERSION = "2.7"


def build_schema(domains: Sequence[Domain]) -> strawberry.federation.Schema:
    """One Apollo Federation v2 subgraph schema of the given domains' types."""

    def merged(kind: str) -> type | None:
        parts = tuple(part for d in domains if (part := getattr(d, kind)) is not None)
        return merge_types(kind.capitalize(), parts) if parts else None

    query = merged("query")
    assert query is not None, "every subgraph has at least one query field"
    mutation, subscription = merged("mutation"), merged("subscription")
    types = [t for d in domains for t in d.types]
    guard_declared_scopes([r for r in (query, mutation, subscription) if r] + types)
    return strawberry.federation.Schema(
        query=query,
        mutation=mutation,
        subscription=subscription,
        types=types,
        federation_version=FEDERATION_VERSION,  # type: ignore[arg-type]
        execution_context_class=PlainFieldsExecution,
        extensions=[
            PublicErrors,
            OperationMetrics,
            CurrentCaller,
            DocumentCache,
            lambda: ValidationCache(maxsize=DOCUMENT_CACHE_SIZE),
        ],
    )
