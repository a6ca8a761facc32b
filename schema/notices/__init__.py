"""notices: government notices to citizens through the private apps they choose.

Agencies publish (over their signed HTTP route or GraphQL) and the hub's own domains
publish from their events; a citizen opts in per notice type and per app through the
consent page; each app receives its citizens' notices by signed webhooks (retried for more
than a day, dead letters it can redrive) and reads them through GraphQL; read receipts go
back to the agency. City operators also show public messages on the taxi-top displays in
an area (`displays.py`, docs/notices-displays.md). This module is the domain's manifest;
the parts live beside it and in `resolvers/notices/`.
"""

from __future__ import annotations

from strawberry.tools import merge_types

from hub.core.domain import Domain
from resolvers.notices import scopes
from resolvers.notices.displays import DISPLAY_SCOPES
from resolvers.notices.settings import NoticesSettings
from schema.notices.api import NoticesMutation, NoticesQuery, NoticesSubscription
from schema.notices.displays import WORKERS as DISPLAY_WORKERS
from schema.notices.displays import DisplaysMutation, DisplaysQuery
from schema.notices.routes import ROUTES
from schema.notices.runtime import WORKER
from schema.notices.source_polls import WORKER as SOURCES_WORKER
from schema.notices.state import lifespan

domain = Domain(
    name="notices",
    description="government notices to citizens through the apps they choose",
    requires=("platform", "sensors", "payments", "waste", "mobility"),
    query=merge_types("NoticesQueries", (NoticesQuery, DisplaysQuery)),
    mutation=merge_types("NoticesMutations", (NoticesMutation, DisplaysMutation)),
    subscription=NoticesSubscription,
    settings=NoticesSettings,
    scopes=(*scopes.ALL, *DISPLAY_SCOPES),
    lifespan=lifespan,
    workers=(WORKER, SOURCES_WORKER, *DISPLAY_WORKERS),
    routes=ROUTES,
)
