"""Settings, from IEUM_RFIDWASTE_* variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from adapters.registry import AdapterSettings
from adapters.rfidwaste.wire import BASE_PATH, MAX_ROWS


class RfidWasteSettings(AdapterSettings):
    model_config = SettingsConfigDict(env_prefix="IEUM_RFIDWASTE_")

    service_key: SecretStr = Field(
        description="data.go.kr service key (the 'Decoding' form: httpx encodes it)."
    )
    base_url: str = Field(
        default=f"http://apis.data.go.kr{BASE_PATH}",
        description="Where the RfidFoodWasteServiceNew operations live (http: users report "
        "that https fails).",
    )
    page_rows: int = Field(
        default=100,
        ge=1,
        le=MAX_ROWS,
        description="rowNum: rows asked per page; a month of days fits in one page.",
    )
