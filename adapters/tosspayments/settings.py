"""Settings, from IEUM_TOSSPAYMENTS_* variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from adapters.registry import AdapterSettings


class TossPaymentsSettings(AdapterSettings):
    model_config = SettingsConfigDict(env_prefix="IEUM_TOSSPAYMENTS_")

    secret_key: SecretStr = Field(
        description="API secret key (test_sk_… or live_sk_…), sent as Basic authentication."
    )
    webhook_secret: SecretStr = Field(
        description="The secret webhooks are signed with (tosspayments-webhook-signature)."
    )
    base_url: str = Field(
        default="https://api.tosspayments.com", description="Where the /v1 API lives."
    )
    webhook_tolerance_seconds: float = Field(
        default=300,
        gt=0,
        description="How far a webhook's transmission time may be from now; older (or "
        "later) ones are refused as replays.",
    )
