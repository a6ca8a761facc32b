"""The payments section of the hub's settings (`IEUM_PAYMENTS_*`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

CRASH_POINTS = ("before_gateway", "after_gateway", "before_ledger_commit")


class PaymentsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IEUM_PAYMENTS_", frozen=True, extra="ignore")

    tax_adapter: str = Field(
        default="localtax", description="Adapter (kind tax_bills) of the local tax system."
    )
    gateway_adapter: str = Field(
        default="tosspayments", description="Adapter (kind payment_gateway) of the card gateway."
    )
    sandbox: bool = Field(
        default=True,
        description="When an adapter's own settings are missing, run its sandbox inside the"
        " hub (demo mode; one for all its HTTP processes). Set false in production so a missing"
        " setting stops the payment instead.",
    )
    in_serve: bool = Field(
        default=True,
        description="Run the recovery, tax-notice and outbox workers inside `ieum serve`.",
    )
    idempotency_key_hours: int = Field(
        default=24,
        ge=1,
        le=24 * 30,
        description="How long an Idempotency-Key's first answer is kept and replayed.",
    )
    order_minutes: int = Field(
        default=10,
        ge=1,
        le=60,
        description="How long a collected bill waits for its card (the gateway's session"
        " window) before the payment expires and the bill is free again.",
    )
    confirm_stale_seconds: float = Field(
        default=30,
        gt=0,
        description="A confirm still in flight after this long is presumed lost (the process"
        " died) and resolved by the recovery job.",
    )
    recovery_seconds: float = Field(
        default=2,
        gt=0,
        le=300,
        description="How often the recovery job resolves unknown payments and refunds.",
    )
    notice_retry_max_seconds: float = Field(
        default=300,
        gt=0,
        description="Longest wait between two tries of a receipt notice to the tax system.",
    )
    events_topic: str = Field(
        default="ieum.payments.events.v1",
        pattern=r"^[A-Za-z0-9._-]{1,200}$",
        description="Topic the outbox relays payment events to.",
    )
    default_daily_limit: int = Field(
        default=5_000_000, gt=0, description="Daily limit of a new terminal, in won."
    )
    crash_point: str | None = Field(
        default=None,
        description="Fault drills only: the process exits at this step of a confirm"
        f" ({', '.join(CRASH_POINTS)}), to prove a restart loses and doubles nothing.",
    )
