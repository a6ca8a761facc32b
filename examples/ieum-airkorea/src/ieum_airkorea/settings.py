"""Settings, from IEUM_AIRKOREA_* variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from adapters.registry import AdapterSettings


class AirKoreaSettings(AdapterSettings):
    model_config = SettingsConfigDict(env_prefix="IEUM_AIRKOREA_")

    service_key: SecretStr = Field(
        description="data.go.kr service key (the 'Decoding' form: httpx encodes it)."
    )
    area: str = Field(
        min_length=2,
        description="Address prefix of the stations to serve, as AirKorea writes it "
        "(e.g. '서울 강남구').",
    )
    base_url: str = Field(
        default="http://apis.data.go.kr/B552584",
        description="Where the ArpltnInforInqireSvc and MsrstnInfoInqireSvc services live.",
    )
    stations_ttl_seconds: float = Field(
        default=24 * 3600, gt=0, description="How long the station list is reused."
    )
