"""Settings, from IEUM_RAILBOOKING_* variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from adapters.registry import AdapterSettings


class RailBookingSettings(AdapterSettings):
    model_config = SettingsConfigDict(env_prefix="IEUM_RAILBOOKING_")

    base_url: str = Field(
        description="Where the operator's partner booking API answers (its /partner/v1 paths)."
    )
    partner_id: str = Field(
        min_length=1, description="The partner id the operator registered the hub under."
    )
    partner_key: SecretStr = Field(
        description="The key the operator issued with it; every call is signed with it."
    )
