"""Settings, from IEUM_LOCALTAX_* variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from adapters.registry import AdapterSettings


class LocalTaxSettings(AdapterSettings):
    model_config = SettingsConfigDict(env_prefix="IEUM_LOCALTAX_")

    base_url: str = Field(
        description="Where the tax system's /localtax/v1 service answers (no trailing path)."
    )
    api_key: SecretStr = Field(description="The API key the tax system issued to the hub.")
    institution_code: str = Field(
        pattern=r"^[0-9]{7}$",
        description="The 7-digit 수납기관코드 the key was issued to; receipts are recorded "
        "under it, and only its own receipts can be cancelled.",
    )
