"""Partners register and retire their sensor devices."""

from __future__ import annotations

import strawberry

from hub.core.context import Info
from resolvers.sensors import devices, scopes
from schema.sensors.types import RegisterSensorDeviceInput, SensorDevice, device_of

READ = [[scopes.READ.name]]
INGEST = [[scopes.INGEST.name]]
MAX_PAGE = 1000


@strawberry.type
class SensorsMutation:
    @strawberry.federation.field(
        requires_scopes=INGEST,
        description="Register a sensor unit on a vehicle, or move yours to another vehicle.",
    )
    async def register_sensor_device(
        self, info: Info, input: RegisterSensorDeviceInput
    ) -> SensorDevice | None:
        device = await devices.register(
            info.context.db,
            info.context.caller.client_id or "",
            input.device_id,
            input.vehicle_id,
            input.description,
        )
        return device_of(device)

    @strawberry.federation.field(
        requires_scopes=INGEST, description="Stop accepting messages from one of your units."
    )
    async def disable_sensor_device(self, info: Info, device_id: str) -> SensorDevice | None:
        owner = info.context.caller.client_id or ""
        return device_of(await devices.disable(info.context.db, owner, device_id))
