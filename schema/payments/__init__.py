"""payments: an official's phone as a card terminal for local taxes and public fees.

Bills come from the tax system's adapter, card payments go through the gateway's adapter,
and every won is booked in a double-entry ledger the database keeps balanced. This module
is the domain's manifest; the GraphQL parts and the flow live beside it, the SQL in
`resolvers/payments/`, the adapters in `adapters/localtax` and `adapters/tosspayments`.
"""

from __future__ import annotations

from hub.core.domain import Domain
from resolvers.payments import scopes
from resolvers.payments.settings import PaymentsSettings
from schema.payments.api import PaymentsMutation, PaymentsQuery, PaymentsSubscription
from schema.payments.routes import ROUTES
from schema.payments.runtime import COMMANDS, WORKER
from schema.payments.state import lifespan

domain = Domain(
    name="payments",
    description="bills, card terminals, payments, refunds, ledger and reconciliation",
    requires=("platform",),
    query=PaymentsQuery,
    mutation=PaymentsMutation,
    subscription=PaymentsSubscription,
    settings=PaymentsSettings,
    scopes=scopes.ALL,
    lifespan=lifespan,
    workers=(WORKER,),
    commands=COMMANDS,
    routes=ROUTES,
)
