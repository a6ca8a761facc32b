"""AirKorea's fixed air-quality stations of one area, as an Ieum adapter."""

from adapters.kinds import Kind
from adapters.registry import Adapter
from ieum_airkorea.client import AirKorea
from ieum_airkorea.sandbox import SANDBOX
from ieum_airkorea.settings import AirKoreaSettings

adapter = Adapter(
    name="airkorea",
    kind=Kind.AIR_QUALITY_STATIONS,
    summary="AirKorea real-time measurements of an area's stations",
    settings=AirKoreaSettings,
    build=AirKorea,
    sandbox=SANDBOX,
)

__all__ = ["AirKorea", "AirKoreaSettings", "adapter"]
