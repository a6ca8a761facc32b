"""Settings, from IEUM_TAGO_* variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from adapters.registry import AdapterSettings
from adapters.tago.wire import BASE_PATH, MAX_ROWS, Api


class TagoSettings(AdapterSettings):
    model_config = SettingsConfigDict(env_prefix="IEUM_TAGO_")

    service_key: SecretStr = Field(
        description="data.go.kr service key (the 'Decoding' form: httpx encodes it)."
    )
    base_url: str = Field(
        default=f"https://apis.data.go.kr{BASE_PATH}",
        description="Where both publications of TrainInfoService live (/TrainInfo and "
        "/TrainInfoService under it).",
    )
    api: Api = Field(
        default=Api.CURRENT,
        description="The publication asked first: 'current' (/TrainInfo/GetStrtpnt…) or "
        "'legacy' (/TrainInfoService/getStrtpnt…); the other is tried when it answers code 12.",
    )
    page_rows: int = Field(
        default=100,
        ge=1,
        le=MAX_ROWS,
        description="numOfRows: rows asked per page; a busy day between two stations fits in one.",
    )
