"""A rail operator's partner booking API (seats, holds, tickets, refunds) as an Ieum
adapter, with a sandbox that sells the shared rail network's trains."""

from adapters.kinds import Kind
from adapters.railbooking.client import PartnerBooking
from adapters.railbooking.sandbox import SANDBOX
from adapters.railbooking.settings import RailBookingSettings
from adapters.registry import Adapter

adapter = Adapter(
    name="railbooking",
    kind=Kind.RAIL_BOOKING,
    summary="a rail operator's partner booking API: seats, holds, tickets, refunds",
    settings=RailBookingSettings,
    build=PartnerBooking,
    sandbox=SANDBOX,
)

__all__ = ["PartnerBooking", "RailBookingSettings", "adapter"]
