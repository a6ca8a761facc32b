"""Scopes in GraphQL: the caller from the bearer token, and `@requiresScopes` enforced.

A field declares its scopes once, with the federation directive
(`strawberry.federation.field(requires_scopes=[["a", "b"], ["c"]])`: any inner list, all
of it). When the schema is built, `guard_declared_scopes` puts a `ScopeGuard` on every
field that carries the directive (or whose type does), built from that same directive,
so the printed SDL and what the hub enforces cannot drift apart.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator
from typing import Any

from strawberry.extensions import FieldExtension
from strawberry.federation.schema_directives import RequiresScopes
from strawberry.types.base import StrawberryContainer
from strawberry.types.lazy_type import LazyType
from strawberry.types.union import StrawberryUnion

from auth.scopes import satisfies
from hub.core.errors import Forbidden, Unauthenticated

Requirement = list[list[str]]


class ScopeGuard(FieldExtension):
    """Null and an error instead of the field when the caller's token lacks the scopes."""

    def __init__(self, required: Requirement) -> None:
        self.required = required

    def check(self, info: Any) -> None:
        caller = info.context.caller
        if satisfies(caller.scopes, self.required):
            return
        needed = " or ".join(" and ".join(group) for group in self.required)
        if caller.anonymous:
            raise Unauthenticated(
                f"{info.field_name} needs an access token with scope {needed}",
                requiredScopes=self.required,
            )
        raise Forbidden(
            f"{info.field_name} needs scope {needed}; the token has "
            f"{' '.join(sorted(caller.scopes)) or 'none'}",
            requiredScopes=self.required,
        )

    def resolve(self, next_: Any, source: Any, info: Any, **kwargs: Any) -> Any:
        self.check(info)
        return next_(source, info, **kwargs)

    async def resolve_async(self, next_: Any, source: Any, info: Any, **kwargs: Any) -> Any:
        self.check(info)
        result = next_(source, info, **kwargs)
        return await result if inspect.isawaitable(result) else result


def guard_declared_scopes(roots: Iterable[type]) -> None:
    """Add a ScopeGuard to each field reachable from `roots` that declares scopes."""
    seen: set[type] = set()
    pending = list(roots)
    while pending:
        cls = pending.pop()
        definition = getattr(cls, "__strawberry_definition__", None)
        if definition is None or cls in seen:
            continue
        seen.add(cls)
        type_required = _declared(definition.directives)
        for field in definition.fields:
            for required in (type_required, _declared(field.directives)):
                if required and not any(
                    isinstance(ext, ScopeGuard) and ext.required == required
                    for ext in field.extensions
                ):
                    field.extensions.append(ScopeGuard(required))
            pending.extend(_named_types(field.type))


def _declared(directives: Iterable[object]) -> Requirement | None:
    for directive in directives:
        if isinstance(directive, RequiresScopes):
            return [list(group) for group in directive.scopes]
    return None


def _named_types(annotation: Any) -> Iterator[type]:
    while isinstance(annotation, StrawberryContainer):
        annotation = annotation.of_type
    if isinstance(annotation, LazyType):
        annotation = annotation.resolve_type()
    if isinstance(annotation, StrawberryUnion):
        for member in annotation.types:
            yield from _named_types(member)
    elif isinstance(annotation, type):
        yield annotation
