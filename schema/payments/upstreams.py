"""The tax system and the card gateway one process calls, connected on first use.

The adapters are named in the payments settings (`IEUM_PAYMENTS_TAX_ADAPTER`,
`IEUM_PAYMENTS_GATEWAY_ADAPTER`) and configured by their own variables. Where those are
missing and `IEUM_PAYMENTS_SANDBOX` is on (the demo), the adapter's sandbox runs inside
this process, shared by everything in it, and the adapter is pointed at it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
from pydantic import ValidationError

from adapters import registry
from adapters.errors import UpstreamUnavailable
from adapters.kinds import PaymentGateway, TaxBills
from adapters.sandbox.server import RunningSandbox, running
from resolvers.payments.settings import PaymentsSettings

WEBHOOK_PATH = "/payments/webhooks/gateway"


class Upstreams:
    """Built adapters for one process; close with aclose()."""

    def __init__(self, settings: PaymentsSettings, issuer: str) -> None:
        self.settings = settings
        self.issuer = issuer
        self._built: dict[str, Any] = {}
        self._lock = asyncio.Lock()
        self._sandboxes = contextlib.AsyncExitStack()

    async def tax(self) -> TaxBills:
        return cast(TaxBills, await self._connect(self.settings.tax_adapter))

    async def gateway(self) -> PaymentGateway:
        return cast(PaymentGateway, await self._connect(self.settings.gateway_adapter))

    async def aclose(self) -> None:
        for connection in self._built.values():
            await connection.aclose()
        self._built.clear()
        await self._sandboxes.aclose()

    async def _connect(self, name: str) -> Any:
        if name in self._built:
            return self._built[name]
        async with self._lock:
            if name not in self._built:
                adapter = registry.get(name)
                try:
                    settings = adapter.read_settings()
                except ValidationError as exc:
                    settings = await self._sandboxed(adapter, exc)
                self._built[name] = adapter.connect(settings)
        return self._built[name]

    async def _sandboxed(self, adapter: registry.Adapter[Any], exc: ValidationError) -> Any:
        if not self.settings.sandbox or adapter.sandbox is None:
            raise UpstreamUnavailable(
                f"payments: the {adapter.name} adapter is not configured: "
                f"{registry.describe_invalid(adapter, exc)}",
                upstream=adapter.name,
            )
        sandbox = await self._sandboxes.enter_async_context(running(adapter.sandbox))
        await _point_webhooks(sandbox, self.issuer + WEBHOOK_PATH)
        return adapter.read_settings(**sandbox.settings())


_SHARED: dict[int, tuple[Upstreams, list[int]]] = {}


@contextlib.asynccontextmanager
async def shared(settings: PaymentsSettings, issuer: str) -> AsyncIterator[Upstreams]:
    """The process's Upstreams (per event loop): the HTTP app and the workers running
    beside it call the same adapters, and so the same in-process sandboxes."""
    loop = id(asyncio.get_running_loop())
    if loop not in _SHARED:
        _SHARED[loop] = (Upstreams(settings, issuer), [0])
    upstreams, users = _SHARED[loop]
    users[0] += 1
    try:
        yield upstreams
    finally:
        users[0] -= 1
        if users[0] == 0:
            del _SHARED[loop]
            await upstreams.aclose()


async def _point_webhooks(sandbox: RunningSandbox, url: str) -> None:
    """A gateway sandbox sends its webhooks to this hub (other sandboxes ignore this)."""
    async with httpx.AsyncClient(base_url=sandbox.url) as client:
        await client.post("/_sandbox/config", json={"webhookUrl": url})
