"""국토교통부 TAGO 열차정보 (TrainInfoService on data.go.kr) as an Ieum adapter: trains
between two stations on a day with their adult fares, and TAGO's city, station and train
kind lists, through either publication of the service, with a sandbox."""

from adapters.kinds import Kind
from adapters.registry import Adapter
from adapters.tago.client import Tago
from adapters.tago.sandbox import SANDBOX
from adapters.tago.settings import TagoSettings

adapter = Adapter(
    name="tago",
    kind=Kind.TRAIN_TIMETABLE,
    summary="TAGO TrainInfoService: scheduled trains between stations, adult fares",
    settings=TagoSettings,
    build=Tago,
    sandbox=SANDBOX,
)

__all__ = ["Tago", "TagoSettings", "adapter"]
