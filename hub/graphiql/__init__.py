"""GraphiQL served from the hub's own copy, not a CDN: on a closed network (most city
networks) the CDN's page never leaves "Loading…".

`page()` is the HTML for `/graphql` (GraphQLEndpoint.render_graphql_ide) and `assets` the
mount of the scripts and styles it loads, under `/graphiql/`. The page refers to them by
relative URLs, so both must stay side by side. Versions, origin and licenses: README.md.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from starlette.responses import HTMLResponse
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

HERE = Path(__file__).parent
PREFIX = "/graphiql"  # the page's asset URLs are "graphiql/…", next to /graphql

assets = Mount(PREFIX, app=StaticFiles(directory=HERE / "static"), name="graphiql")


@cache
def _html() -> str:
    return (HERE / "page.html").read_text(encoding="utf-8")


def page() -> HTMLResponse:
    """GraphiQL's page, with its header editor (a bearer token) and subscriptions over
    WebSocket (graphql-transport-ws, sending those headers in connection_init)."""
    return HTMLResponse(_html())
