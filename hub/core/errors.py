"""Errors a client may see. Each carries a stable `code` that lands in GraphQL `extensions`.

    IeumError
    ├── BadUserInput         BAD_USER_INPUT: the request is wrong; the message says how
    ├── Unauthenticated      UNAUTHENTICATED
    ├── Forbidden            FORBIDDEN
    ├── NotFound             NOT_FOUND
    └── UpstreamUnavailable  UPSTREAM_UNAVAILABLE: a system we depend on did not answer

Anything else raised while executing is a bug: the client gets "Unexpected error." with
code INTERNAL_SERVER_ERROR and the details go to the log at ERROR, with the traceback.
The errors above are the client's to fix (or an upstream's): they are logged as one line,
at INFO (WARNING for an upstream), never as a traceback.
"""

from __future__ import annotations

from typing import Any, ClassVar


class IeumError(Exception):
    code: ClassVar[str] = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message)
        # graphql-core copies `extensions` from the original error into the response.
        self.extensions: dict[str, Any] = {"code": self.code, **extensions}


class BadUserInput(IeumError):
    code = "BAD_USER_INPUT"


class Unauthenticated(IeumError):
    code = "UNAUTHENTICATED"


class Forbidden(IeumError):
    code = "FORBIDDEN"


class NotFound(IeumError):
    code = "NOT_FOUND"


class UpstreamUnavailable(IeumError):
    code = "UPSTREAM_UNAVAILABLE"
