"""The bearer token on HTTP and WebSocket requests: who calls, and the 401/503 answers."""

from __future__ import annotations

from starlette.responses import JSONResponse

from auth.tokens import AccessTokenVerifier, InvalidToken, TokenChecksUnavailable
from hub.core.caller import ANONYMOUS, Caller
from hub.core.errors import UpstreamUnavailable


def caller_from_header(verifier: AccessTokenVerifier, authorization: object) -> Caller:
    """The caller an Authorization header names; anonymous without one. Raises
    InvalidToken or TokenChecksUnavailable."""
    if authorization is None:
        return ANONYMOUS
    scheme, _, token = str(authorization).partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("use the Authorization header 'Bearer <access token>'")
    return verifier.verify(token.strip())


class Rechecker:
    """For a WebSocket's later operations: the token's caller again, None once it is no
    longer valid, UpstreamUnavailable while tokens cannot be checked. `standing()` changes
    whenever a token that checked out may not any more (until it expires)."""

    def __init__(self, verifier: AccessTokenVerifier) -> None:
        self.verifier = verifier

    def standing(self) -> tuple[int, bool]:
        return self.verifier.standing()

    def __call__(self, token: str) -> Caller | None:
        try:
            return self.verifier.verify(token)
        except InvalidToken:
            return None
        except TokenChecksUnavailable as exc:
            raise UpstreamUnavailable(str(exc)) from None


def unauthorized(reason: str) -> JSONResponse:
    """RFC 6750's 401, with the reason in the body and the WWW-Authenticate header."""
    # Header-safe: printable ASCII only, no quotes to break out of the parameter.
    quoted = "".join(c for c in reason if " " <= c <= "~" and c not in '"\\')
    return JSONResponse(
        {"errors": [{"message": reason, "extensions": {"code": "UNAUTHENTICATED"}}]},
        status_code=401,
        headers={"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{quoted}"'},
    )


def unavailable(reason: str) -> JSONResponse:
    return JSONResponse(
        {"errors": [{"message": reason, "extensions": {"code": UpstreamUnavailable.code}}]},
        status_code=503,
        headers={"Retry-After": "5"},
    )
