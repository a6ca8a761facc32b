"""The registry of sensor units and the vehicles they are on, per owning partner."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from hub.core.errors import BadUserInput, Forbidden, NotFound

DEVICE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# Where units take commands and send acknowledgements, whatever a command is for (Kafka,
# keyed by device id; the MQTT bridge relays them to and from each unit's own topics).
COMMANDS_TOPIC = "ieum.devices.commands.v1"
ACKS_TOPIC = "ieum.devices.acks.v1"


@dataclass(frozen=True)
class Device:
    device_id: str
    vehicle_id: str
    description: str
    created_at: datetime
    disabled_at: datetime | None


def _device(row: asyncpg.Record) -> Device:
    return Device(**{field: row[field] for field in Device.__dataclass_fields__})


async def register(
    pool: asyncpg.Pool, owner: str, device_id: str, vehicle_id: str, description: str
) -> Device:
    """Register a unit, or move the owner's unit to another vehicle (idempotent)."""
    if not DEVICE_ID.match(device_id):
        raise BadUserInput("deviceId must be 1-64 letters, digits or . _ : -", argument="deviceId")
    if not 1 <= len(vehicle_id) <= 64:
        raise BadUserInput("vehicleId must be 1-64 characters", argument="vehicleId")
    row = await pool.fetchrow(
        "INSERT INTO sensor_devices (device_id, vehicle_id, owner_client_id, description)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (device_id) DO UPDATE"
        " SET vehicle_id = EXCLUDED.vehicle_id, description = EXCLUDED.description,"
        " disabled_at = NULL"
        " WHERE sensor_devices.owner_client_id = EXCLUDED.owner_client_id RETURNING *",
        device_id,
        vehicle_id,
        owner,
        description,
    )
    if row is None:
        raise Forbidden(f"device {device_id} is registered by another partner")
    return _device(row)


async def disable(pool: asyncpg.Pool, owner: str, device_id: str) -> Device:
    row = await pool.fetchrow(
        "UPDATE sensor_devices SET disabled_at = coalesce(disabled_at, now())"
        " WHERE device_id = $1 AND owner_client_id = $2 RETURNING *",
        device_id,
        owner,
    )
    if row is None:
        raise NotFound(f"you have no device {device_id}")
    return _device(row)


async def list_owned(pool: asyncpg.Pool, owner: str) -> list[Device]:
    rows = await pool.fetch(
        "SELECT * FROM sensor_devices WHERE owner_client_id = $1 ORDER BY device_id", owner
    )
    return [_device(row) for row in rows]
