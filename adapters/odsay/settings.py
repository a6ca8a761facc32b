"""Settings, from IEUM_ODSAY_* variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from adapters.odsay.wire import BASE_URL
from adapters.registry import AdapterSettings


class OdsaySettings(AdapterSettings):
    model_config = SettingsConfigDict(env_prefix="IEUM_ODSAY_")

    api_key: SecretStr = Field(
        description="The ODsay LAB API key of a server platform (registered for the hub's "
        "outbound IP addresses), as issued: httpx encodes it."
    )
    base_url: str = Field(
        default=BASE_URL, description="Where the ODsay API answers (searchPubTransPath below it)."
    )
