"""한국환경공단's national food-waste RFID volume-rate system (RfidFoodWasteServiceNew) as an
Ieum adapter: its cities and the daily volumes weighed by apartment complexes' RFID bins,
per city or per complex, with a sandbox."""

from adapters.kinds import Kind
from adapters.registry import Adapter
from adapters.rfidwaste.client import RfidWaste
from adapters.rfidwaste.sandbox import SANDBOX
from adapters.rfidwaste.settings import RfidWasteSettings

adapter = Adapter(
    name="rfidwaste",
    kind=Kind.RFID_VOLUMES,
    summary="national food-waste RFID system: daily volumes of apartment complexes",
    settings=RfidWasteSettings,
    build=RfidWaste,
    sandbox=SANDBOX,
)

__all__ = ["RfidWaste", "RfidWasteSettings", "adapter"]
