"""The API schema: what an app developer sees, without the federation machinery.

The subgraph SDL (`ieum schema print`) is for gateways: it imports federation directives
with `@link`, which plain GraphQL tools refuse (`Unknown directive @link`), and carries
`_service`, `_entities` and their types. The API schema leaves those out and says in each
gated field's description which scopes it needs, so it loads in graphql-js and
graphql-core, code generators and editors as it is.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    DocumentNode,
    FieldDefinitionNode,
    Node,
    Visitor,
    build_ast_schema,
    parse,
    print_schema,
    visit,
)
from graphql.language.visitor import REMOVE

FEDERATION_TYPES = frozenset({"_Any", "_Entity", "_Service", "FieldSet", "link__Import"})
FEDERATION_FIELDS = frozenset({"_entities", "_service"})
STANDARD_DIRECTIVES = frozenset({"deprecated", "specifiedBy", "oneOf", "include", "skip"})


def api_sdl(subgraph_sdl: str) -> str:
    """The API schema of a subgraph SDL, printed in graphql-core's canonical order."""
    document = visit(parse(subgraph_sdl), _ApiOnly())
    assert isinstance(document, DocumentNode)
    return print_schema(build_ast_schema(document)) + "\n"


def scopes_sentence(groups: list[list[str]]) -> str:
    """`[["a", "b"], ["c"]]` as "Needs scope a and b, or c." (Apollo's any-of-all-of)."""
    options = [" and ".join(f"`{scope}`" for scope in group) for group in groups]
    noun = "scope" if len(groups) == 1 and len(groups[0]) == 1 else "scopes"
    return f"Needs {noun} {', or '.join(options)}."


class _ApiOnly(Visitor):
    """Drops federation types, fields and directives (the hub's schema already says each
    gated field's scopes in its description: schema.builder.describe_scopes)."""

    def enter(self, node: Node, *_: Any) -> Any:
        name = getattr(getattr(node, "name", None), "value", None)
        kind = node.kind
        if kind.endswith("type_definition") or kind.endswith("type_extension"):
            return REMOVE if name in FEDERATION_TYPES else None
        if kind == "directive":
            return None if name in STANDARD_DIRECTIVES else REMOVE
        if kind == "directive_definition":
            return None if name in STANDARD_DIRECTIVES else REMOVE
        if isinstance(node, FieldDefinitionNode) and name in FEDERATION_FIELDS:
            return REMOVE
        return None
