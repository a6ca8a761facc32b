"""The citizen's consents page: the apps they approved, and revoking any of them.

An app is listed while one of its grants for the citizen can still be used (a token that
is neither revoked nor expired). Revoking it revokes those grants with every token they
issued, as `/oauth/revoke` does, so GraphQL refuses the app's tokens within the token
checks' refresh (auth/tokens.py, 2 s).
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from auth import pages, store
from auth.models import Citizen
from auth.session import csrf_ok, csrf_token

PATH = "/oauth/consents"

# Grants of the citizen that still have a usable token, app by app.
_APPROVED = """
SELECT g.client_id, c.name,
       array_agg(DISTINCT s.scope ORDER BY s.scope) AS scopes,
       min(g.created_at) AS first_approved,
       max(g.created_at) AS last_approved
FROM oauth_grants g
JOIN oauth_clients c USING (client_id)
CROSS JOIN LATERAL unnest(string_to_array(g.scope, ' ')) AS s(scope)
WHERE g.user_id = $1 AND g.revoked_at IS NULL AND c.disabled_at IS NULL
  AND (EXISTS (SELECT 1 FROM oauth_refresh_tokens t WHERE t.grant_id = g.grant_id
               AND t.revoked_at IS NULL AND t.used_at IS NULL AND t.expires_at > now())
       OR EXISTS (SELECT 1 FROM oauth_access_tokens t WHERE t.grant_id = g.grant_id
                  AND t.revoked_at IS NULL AND t.expires_at > now()))
GROUP BY g.client_id, c.name
ORDER BY max(g.created_at) DESC
"""


async def approved_apps(pool: asyncpg.Pool, user_id: uuid.UUID) -> list[pages.ApprovedApp]:
    return [
        pages.ApprovedApp(
            row["client_id"],
            row["name"],
            [scope for scope in row["scopes"] if scope],
            row["first_approved"],
            row["last_approved"],
        )
        for row in await pool.fetch(_APPROVED, user_id)
    ]


async def revoke_app(pool: asyncpg.Pool, user_id: uuid.UUID, client_id: str) -> int:
    """Revoke every grant the citizen gave the app, with its tokens; how many."""
    grants = await pool.fetch(
        "SELECT grant_id FROM oauth_grants"
        " WHERE user_id = $1 AND client_id = $2 AND revoked_at IS NULL",
        user_id,
        client_id,
    )
    for grant in grants:
        await store.revoke_grant(pool, grant["grant_id"])
    return len(grants)


async def page(request: Request) -> Response:
    """GET: the signed-in citizen's apps, or the sign-in form."""
    state = request.app.state
    sessions = await state.sessions.ready()
    session = sessions.read(request)
    citizen = await _citizen(request, session)
    response: Response
    if citizen is None:
        response = pages.sign_in(None, csrf_token(session), PATH)
    else:
        apps = await approved_apps(state.oauth.pool, citizen.user_id)
        response = pages.consents(citizen.display_name, apps, csrf_token(session))
    sessions.write(response, session)
    return response


async def revoke(request: Request) -> Response:
    """POST: revoke one app, then back to the list."""
    state = request.app.state
    form = await request.form()
    sessions = await state.sessions.ready()
    session = sessions.read(request)
    citizen = await _citizen(request, session)
    if citizen is None or not csrf_ok(session, str(form.get("csrf_token", ""))):
        return pages.error("요청 만료 · Request expired", "CSRF check failed; start again.", 403)
    await revoke_app(state.oauth.pool, citizen.user_id, str(form.get("client_id", "")))
    return RedirectResponse(PATH, status_code=303)


routes = [
    Route(PATH, page, methods=["GET"]),
    Route(f"{PATH}/revoke", revoke, methods=["POST"]),
]


async def _citizen(request: Request, session: dict[str, Any]) -> Citizen | None:
    try:
        user_id = uuid.UUID(str(session.get("user_id")))
    except ValueError:
        return None
    return await request.app.state.identity.get(user_id)
