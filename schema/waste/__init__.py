"""waste: food-waste collection without paper stickers.

Businesses register their sites and bins, request pickups and pay them through the payments
domain; collectors' phones scan the bins' signed QR or NFC tags at pickup; the city sees
collected volumes (with the national RFID system's apartment volumes) as they come in. This
module is the domain's manifest; the parts live beside it and in `resolvers/waste/`.
"""

from __future__ import annotations

from strawberry.tools import merge_types

from hub.core.domain import Domain
from resolvers.waste import scopes
from resolvers.waste.settings import WasteSettings
from schema.waste import demo, rfid_sync, routes, tags_cli
from schema.waste.collection import (
    District,
    WasteCollectionMutation,
    WasteCollectionQuery,
    WasteCollectionSubscription,
    lifespan,
)
from schema.waste.orders import WasteOrderMutation, WasteOrderQuery
from schema.waste.payments_sync import PAYMENT_SYNC
from schema.waste.pickups import WasteRegistryMutation, WasteRegistryQuery

domain = Domain(
    name="waste",
    description="food-waste pickups: tagged bins, fees paid by phone, collected volumes",
    requires=("platform", "payments"),
    query=merge_types("WasteQueries", (WasteRegistryQuery, WasteOrderQuery, WasteCollectionQuery)),
    mutation=merge_types(
        "WasteMutations", (WasteRegistryMutation, WasteOrderMutation, WasteCollectionMutation)
    ),
    subscription=WasteCollectionSubscription,
    types=(District,),  # extends platform's District with wasteVolumes
    settings=WasteSettings,
    scopes=scopes.ALL,
    lifespan=lifespan,
    workers=(PAYMENT_SYNC,),
    commands=(*tags_cli.COMMANDS, *rfid_sync.COMMANDS),
    routes=(*rfid_sync.ROUTES, *routes.ROUTES),
    demo=demo.demo,
)
