"""HTTP endpoints of the authorization server (RFC 6749, 7009, 7662, 8414, 9207)."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import urlencode

import anyio.to_thread
from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import OAuth2Error
from starlette.datastructures import ImmutableMultiDict
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from auth import consents, demo, keys, pages, scopes, signin
from auth.oauth import AuthorizationServer, OAuthResponse, StarletteOAuth2Request
from auth.session import csrf_ok, csrf_token

# The parameters of an authorization request, carried through the sign-in and consent forms.
AUTHORIZE_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
)
# Algorithms a private_key_jwt client may sign its assertions with.
ASSERTION_ALGS = ["ES256", "ES384", "RS256", "PS256", "EdDSA"]
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


async def token(request: Request) -> Response:
    return await _endpoint(request, lambda server, req: server.create_token_response(req))


async def revoke(request: Request) -> Response:
    return await _endpoint(
        request, lambda server, req: server.create_endpoint_response("revocation", req)
    )


async def introspect(request: Request) -> Response:
    return await _endpoint(
        request, lambda server, req: server.create_endpoint_response("introspection", req)
    )


async def authorize(request: Request) -> Response:
    """GET: check the request, then sign-in or consent page. POST: the citizen's decision."""
    state = request.app.state
    server: AuthorizationServer = state.oauth
    raw_form = await request.form()
    form = {k: str(v) for k, v in raw_form.items()}
    params = form if request.method == "POST" else dict(request.query_params)
    if _control_characters(params):
        return pages.error(
            "잘못된 요청 · Invalid request", "Parameters contain control characters."
        )
    if name := _repeated(raw_form if request.method == "POST" else request.query_params):
        return pages.error("잘못된 요청 · Invalid request", f"'{name}' is given more than once.")
    oauth_request = _oauth_request(
        request, {k: v for k, v in params.items() if k in AUTHORIZE_PARAMS}, {}
    )
    try:
        grant = await anyio.to_thread.run_sync(server.get_consent_grant, oauth_request)
    except OAuth2Error as error:
        if error.redirect_uri:  # client and redirect URI known good: tell the app
            result = server.handle_error_response(oauth_request, error)
            if result.location:  # RFC 9207: errors name the issuer too
                result.location = add_params_to_uri(result.location, {"iss": server.issuer})
            return _response(result)
        return pages.error(
            "잘못된 요청 · Invalid request", f"{error.error}: {error.description or ''}".strip()
        )
    client = grant.client
    sessions = await state.sessions.ready()
    session = sessions.read(request)
    user_id = _uuid(session.get("user_id"))
    citizen = await state.identity.get(user_id) if user_id else None
    request_fields = {k: v for k, v in params.items() if k in AUTHORIZE_PARAMS}

    if citizen is None:
        next_url = "/oauth/authorize?" + urlencode(request_fields)
        response: Response = pages.sign_in(client.name, csrf_token(session), next_url)
    elif request.method == "GET":
        scopes = grant.request.scope.split()
        response = pages.consent(
            client.name, citizen.display_name, scopes, csrf_token(session), request_fields
        )
    else:
        if not csrf_ok(session, form.get("csrf_token")):
            return pages.error(
                "요청 만료 · Request expired", "CSRF check failed; start again.", 403
            )
        approved = form.get("decision") == "approve"
        result = await anyio.to_thread.run_sync(
            lambda: server.create_authorization_response(
                oauth_request, grant_user=citizen if approved else None, grant=grant
            )
        )
        response = _response(result)
    sessions.write(response, session)
    return response


async def metadata(request: Request) -> Response:
    """RFC 8414 authorization server metadata."""
    issuer = request.app.state.oauth.issuer
    return JSONResponse(
        {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/oauth/authorize",
            "token_endpoint": f"{issuer}/oauth/token",
            "jwks_uri": f"{issuer}/.well-known/jwks.json",
            "revocation_endpoint": f"{issuer}/oauth/revoke",
            "introspection_endpoint": f"{issuer}/oauth/introspect",
            "scopes_supported": scopes.names(),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
                "none",
            ],
            "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
            "revocation_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
                "none",
            ],
            "revocation_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
            "introspection_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
            "introspection_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
            ],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,
        },
        headers={"Cache-Control": "max-age=300"},
    )


async def jwks(request: Request) -> Response:
    server: AuthorizationServer = request.app.state.oauth
    ring = await keys.load(server.pool, server.access_token_lifetime)
    return JSONResponse(
        {"keys": ring.published()}, headers={"Cache-Control": f"max-age={JWKS_MAX_AGE}"}
    )


# Key rotation publishes a key at least this long before it signs (see `ieum keys rotate`).
JWKS_MAX_AGE = 300

routes = [
    *signin.routes,
    *consents.routes,
    *demo.routes,
    Route("/oauth/authorize", authorize, methods=["GET", "POST"]),
    Route("/oauth/token", token, methods=["POST"]),
    Route("/oauth/revoke", revoke, methods=["POST"]),
    Route("/oauth/introspect", introspect, methods=["POST"]),
    Route("/.well-known/oauth-authorization-server", metadata),
    Route("/.well-known/jwks.json", jwks),
]


async def _endpoint(request: Request, call: Any) -> Response:
    try:
        raw_form = await request.form()
    except HTTPException as exc:  # e.g. multipart without a boundary: Starlette's text 400
        return _invalid_request(f"the body cannot be read as a form: {exc.detail}")
    form = {k: str(v) for k, v in raw_form.items()}
    if _control_characters(form) or _control_characters(dict(request.query_params)):
        return _invalid_request("control characters in parameters")
    if name := _repeated(raw_form) or _repeated(request.query_params):
        return _invalid_request(f"'{name}' is given more than once")
    oauth_request = _oauth_request(request, dict(request.query_params), form)
    server = request.app.state.oauth
    result = await anyio.to_thread.run_sync(call, server, oauth_request)
    return _response(result, NO_STORE)


def _oauth_request(
    request: Request, query: dict[str, str], form: dict[str, str]
) -> StarletteOAuth2Request:
    url = request.app.state.oauth.issuer + request.url.path
    return StarletteOAuth2Request(request.method, url, request.headers, query, form)


def _response(result: OAuthResponse, extra: dict[str, str] | None = None) -> Response:
    header_map = {**dict(result.headers), **(extra or {})}
    if result.status in (301, 302, 303):
        location = header_map.pop("Location")
        return RedirectResponse(location, status_code=302, headers=header_map)
    content = result.body if isinstance(result.body, str) else json.dumps(result.body)
    header_map.setdefault("Content-Type", "application/json")
    return Response(content, status_code=result.status, headers=header_map)


def _invalid_request(description: str) -> JSONResponse:
    return JSONResponse(
        {"error": "invalid_request", "error_description": description},
        status_code=400,
        headers=NO_STORE,
    )


def _repeated(params: ImmutableMultiDict[str, Any]) -> str | None:
    """A parameter given more than once (RFC 6749 3.1, 3.2: they MUST NOT be), which a
    dict would silently reduce to one of its values."""
    seen: set[str] = set()
    for name, _ in params.multi_items():
        if name in seen:
            return name
        seen.add(name)
    return None


def _control_characters(params: dict[str, str]) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for text in (*params, *params.values()) for c in text)


def _uuid(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
