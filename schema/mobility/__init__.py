"""mobility: public services in private apps — door-to-door journeys that combine local
paths with KTX/SRT trains (live seats, walking legs' air quality from the sensors), and
train bookings a citizen consented to, paid through the payments domain. This module is
the domain's manifest; the parts live beside it and in `resolvers/mobility/`.
"""

from __future__ import annotations

from hub.core.domain import Domain
from resolvers.mobility import scopes
from resolvers.mobility.settings import MobilitySettings
from schema.mobility.api import MobilityMutation, MobilityQuery
from schema.mobility.runtime import BOOKINGS
from schema.mobility.state import lifespan

domain = Domain(
    name="mobility",
    description="journeys with KTX/SRT trains and train bookings for consenting citizens",
    requires=("platform", "sensors", "payments"),
    query=MobilityQuery,
    mutation=MobilityMutation,
    settings=MobilitySettings,
    scopes=scopes.ALL,
    lifespan=lifespan,
    workers=(BOOKINGS,),
)
