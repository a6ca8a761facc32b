"""The tax system and the card gateway one process calls, connected on first use.

The adapters are named in the payments settings (`IEUM_PAYMENTS_TAX_ADAPTER`,
`IEUM_PAYMENTS_GATEWAY_ADAPTER`) and configured by their own variables. Where those are
missing and `IEUM_PAYMENTS_SANDBOX` is on (the demo), the adapter's sandbox runs inside
this process, shared by everything in it, and the adapter is pointed at it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import cast

import httpx

from adapters import connections
from adapters.connections import Connections
from adapters.kinds import PaymentGateway, TaxBills
from adapters.sandbox.server import RunningSandbox
from hub.core.errors import UpstreamUnavailable
from resolvers.payments.settings import PaymentsSettings

WEBHOOK_PATH = "/payments/webhooks/gateway"


class Upstreams:
    """Built adapters for one process; close with aclose()."""

    def __init__(self, settings: PaymentsSettings, issuer: str) -> None:
        self.settings = settings
        self.issuer = issuer
        self._connections = Connections(
            "payments", sandbox=settings.sandbox, on_sandbox=self._point_webhooks
        )

    async def tax(self) -> TaxBills:
        return cast(TaxBills, await self._connections.get(self.settings.tax_adapter))

    async def gateway(self) -> PaymentGateway:
        return cast(PaymentGateway, await self._connections.get(self.settings.gateway_adapter))

    async def aclose(self) -> None:
        await self._connections.aclose()

    async def _point_webhooks(self, sandbox: RunningSandbox) -> None:
        """A gateway sandbox sends its webhooks to this hub (other sandboxes answer 404,
        ignored). One that does not answer is an upstream unavailable, not our bug."""
        try:
            async with httpx.AsyncClient(base_url=sandbox.url) as client:
                await client.post(
                    "/_sandbox/config", json={"webhookUrl": self.issuer + WEBHOOK_PATH}
                )
        except httpx.HTTPError as exc:
            name = sandbox.sandbox.name
            raise UpstreamUnavailable(
                f"payments: the {name} sandbox did not take the hub's webhook address "
                f"({type(exc).__name__}: {exc}); try again",
                upstream=name,
            ) from exc


@contextlib.asynccontextmanager
async def shared(settings: PaymentsSettings, issuer: str) -> AsyncIterator[Upstreams]:
    """The process's Upstreams (per event loop): the HTTP app and the workers running
    beside it call the same adapters, and so the same in-process sandboxes."""
    async with connections.shared("payments", lambda: Upstreams(settings, issuer)) as found:
        yield found
