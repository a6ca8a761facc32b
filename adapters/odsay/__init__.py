"""ODsay's public transit route search (searchPubTransPath) as an Ieum adapter: walk, bus
and subway paths between two points within a city, with a sandbox."""

from adapters.kinds import Kind
from adapters.odsay.client import Odsay
from adapters.odsay.sandbox import SANDBOX
from adapters.odsay.settings import OdsaySettings
from adapters.registry import Adapter

adapter = Adapter(
    name="odsay",
    kind=Kind.LOCAL_ROUTES,
    summary="ODsay route search: walk, bus and subway paths within a city",
    settings=OdsaySettings,
    build=Odsay,
    sandbox=SANDBOX,
)

__all__ = ["Odsay", "OdsaySettings", "adapter"]
