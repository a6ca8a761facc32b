"""Settings, from IEUM_AGENCYNOTICE_* variables: the agencies the hub takes notices from."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from adapters.agencynotice import wire
from adapters.registry import AdapterSettings


class AgencyLink(BaseModel):
    """One agency system: the key it signs with and where its receipts API answers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = Field(description="Where the agency's /v1 API answers.")
    api_key: SecretStr = Field(description="The key the agency issued the hub for its API.")
    signing_secrets: list[SecretStr] = Field(
        min_length=1,
        max_length=2,
        description="whsec_… secrets the agency signs submissions with: two while it "
        "rotates (a submission signed with either is taken).",
    )

    @field_validator("signing_secrets")
    @classmethod
    def _decodable(cls, secrets: list[SecretStr]) -> list[SecretStr]:
        for secret in secrets:
            wire.secret_key(secret.get_secret_value())
        return secrets

    def keys(self) -> list[bytes]:
        return [wire.secret_key(secret.get_secret_value()) for secret in self.signing_secrets]


class AgencyNoticeSettings(AdapterSettings):
    model_config = SettingsConfigDict(env_prefix="IEUM_AGENCYNOTICE_")

    agencies: dict[str, AgencyLink] = Field(
        min_length=1,
        description='JSON: {"<7-character agency code>": {"base_url", "api_key", '
        '"signing_secrets": ["whsec_…"]}} for every agency whose notices the hub takes.',
    )
    tolerance_seconds: int = Field(
        default=300,
        ge=30,
        le=900,
        description="How far a submission's webhook-timestamp may be from now; older (or "
        "later) ones are refused as stale.",
    )
    replay_memory: int = Field(
        default=100_000,
        ge=1_000,
        description="Signed requests remembered (for twice the tolerance) so that one "
        "received again verbatim is refused as a replay.",
    )

    @field_validator("agencies", mode="before")
    @classmethod
    def _from_json(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    @field_validator("agencies")
    @classmethod
    def _codes(cls, agencies: dict[str, AgencyLink]) -> dict[str, AgencyLink]:
        for code in agencies:
            if not wire.AGENCY_CODE.match(code):
                raise ValueError(f"agency code {code!r} is not 7 digits or capitals")
        return agencies
