"""The adapter: Toss Payments' /v1 API through the hub's resilience layer.

Confirm and cancel carry the caller's idempotency key, so the resilience layer may resend
them after a timeout or a 5xx and the gateway answers the first outcome again instead of
charging twice. A `{code, message}` refusal becomes `Declined`, never retried.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Mapping
from datetime import date
from urllib.parse import quote

from adapters.kinds import Declined, GatewayPayment, SettlementRow, WebhookEvent, WebhookRejected
from adapters.resilience import Upstream
from adapters.tosspayments import wire
from adapters.tosspayments.settings import TossPaymentsSettings

HEALTH_PROBE_ORDER = "ieum-health-probe"  # no payment has it: the answer proves the key


class TossPayments:
    def __init__(self, settings: TossPaymentsSettings) -> None:
        self.settings = settings
        self.upstream = Upstream(
            wire.UPSTREAM,
            settings.base_url,
            settings.policy(),
            headers={"Authorization": wire.basic_auth(settings.secret_key.get_secret_value())},
        )

    async def health(self) -> None:
        """The gateway answers a lookup with our key (NOT_FOUND_PAYMENT is an answer)."""
        await self.payment_by_order(HEALTH_PROBE_ORDER)

    async def confirm(
        self, payment_key: str, order_id: str, amount: int, *, idempotency_key: str
    ) -> GatewayPayment:
        body = {"paymentKey": payment_key, "orderId": order_id, "amount": amount}
        return await self.upstream.call(
            "POST",
            "/v1/payments/confirm",
            wire.payment,
            json=body,
            idempotency_key=idempotency_key,
            refuse=wire.refusal,
        )

    async def payment(self, payment_key: str) -> GatewayPayment | None:
        return await self._lookup(f"/v1/payments/{quote(payment_key, safe='')}")

    async def payment_by_order(self, order_id: str) -> GatewayPayment | None:
        return await self._lookup(f"/v1/payments/orders/{quote(order_id, safe='')}")

    async def cancel(
        self, payment_key: str, amount: int, reason: str, *, idempotency_key: str
    ) -> GatewayPayment:
        return await self.upstream.call(
            "POST",
            f"/v1/payments/{quote(payment_key, safe='')}/cancel",
            wire.payment,
            json={"cancelReason": reason, "cancelAmount": amount},
            idempotency_key=idempotency_key,
            refuse=wire.refusal,
        )

    async def settlements(self, day: date) -> list[SettlementRow]:
        return await self.upstream.get(
            "/v1/settlements.csv",
            wire.settlements,
            params={"date": day.isoformat()},
            refuse=wire.refusal,
        )

    def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        """Signed with our webhook secret and sent within the tolerance of now, or refused.

        The transmission time is part of what is signed, so an old request replayed
        verbatim is refused as stale and one with a fresh time fails the signature.
        """
        lowered = {name.lower(): value for name, value in headers.items()}
        missing = [
            name
            for name in (wire.TRANSMISSION_ID, wire.TRANSMISSION_TIME, wire.SIGNATURE)
            if not lowered.get(name)
        ]
        if missing:
            raise WebhookRejected(f"missing header {', '.join(missing)}")
        sent_at = lowered[wire.TRANSMISSION_TIME]
        expected = wire.signature(self.settings.webhook_secret.get_secret_value(), body, sent_at)
        offered = (part.strip() for part in lowered[wire.SIGNATURE].split(","))
        if not any(hmac.compare_digest(part, expected) for part in offered):
            raise WebhookRejected("bad signature: not signed with our webhook secret")
        try:
            skew = abs(time.time() - wire.instant(sent_at).timestamp())
        except ValueError:
            raise WebhookRejected(f"unreadable transmission time {sent_at!r}") from None
        if skew > self.settings.webhook_tolerance_seconds:
            raise WebhookRejected(
                f"stale: sent at {sent_at}, {skew:.0f} s from now "
                f"(tolerance {self.settings.webhook_tolerance_seconds:g} s)"
            )
        try:
            event = json.loads(body)
            return WebhookEvent(
                event_id=lowered[wire.TRANSMISSION_ID],
                event_type=str(event["eventType"]),
                created_at=wire.instant(event["createdAt"]),
                payment=wire.payment_of(event["data"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise WebhookRejected(f"unreadable event ({type(exc).__name__}: {exc})") from exc

    async def aclose(self) -> None:
        await self.upstream.aclose()

    async def _lookup(self, path: str) -> GatewayPayment | None:
        try:
            return await self.upstream.get(path, wire.payment, refuse=wire.refusal)
        except Declined as exc:
            if exc.code in wire.NOT_FOUND:
                return None
            raise
