"""What one batch writes, computed from its columns before its transaction.

The worker's Python work for a batch (the registry checks as arrays, the COPY payloads of
readings and rollups, the live feed's messages) would leave PostgreSQL idle if it ran
inside the transaction. So it is done ahead, while the previous batch is being written,
on the assumption that the registry says what the messages say (each device registered,
enabled, on the vehicle it names) and nothing of the batch is stored yet. Inside the
transaction the worker reads the registry and the stored offsets as always; if they
match the assumption the plan is used as it is, otherwise it is made again from what
they say, so the outcome is the same either way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from resolvers.sensors import copy_binary, live_feed, live_rows, rollup_merge
from resolvers.sensors.columns import ReadingBatch
from resolvers.sensors.ingest_checks import Checked, check_batch
from resolvers.sensors.rollup import MAX_VEHICLES, RollupColumns, rollup_columns, vehicle_hash
from resolvers.sensors.rollup_merge import Level

States = dict[str, tuple[str, bool]]  # device id → (registered vehicle id, disabled?)


@dataclass(frozen=True)
class Plan:
    states: States  # the registry this plan was made for
    checked: Checked
    copy: bytes  # the accepted readings, rows of sensor_readings (copy_binary)
    stored: np.ndarray  # the rows written (the accepted ones unless some were stored before)
    rollups: RollupColumns  # their rollups per cell and minute (ingest_store.merge_rollups)
    slots: Level  # and per cell and 5-minute slot
    values: int  # metric values the rollups count
    live: list[bytes]  # the stored readings as live feed messages


_EMPTY = np.zeros((0, copy_binary.WIDTH))
NO_ROLLUPS = RollupColumns(
    cell=np.zeros(0, dtype=np.int64),
    minute=np.zeros(0, dtype=np.int64),
    n=_EMPTY.astype(np.int32),
    sums=_EMPTY,
    sums_sq=_EMPTY,
    mins=_EMPTY,
    maxs=_EMPTY,
    vehicles=np.zeros((0, MAX_VEHICLES), dtype=np.int64),
)
NO_SLOTS = Level(NO_ROLLUPS, np.zeros(0, dtype=np.int64))


def assumed(readings: ReadingBatch) -> States:
    """The registry as the messages describe it."""
    return {
        device: (vehicle, False)
        for device, vehicle in zip(readings.device_ids, readings.vehicle_ids, strict=True)
    }


def make(readings: ReadingBatch, fresh: np.ndarray, states: States) -> Plan:
    checked = check_batch(readings, fresh, states)
    accepted = checked.accepted
    return _with_stored(
        Plan(
            states=states,
            checked=checked,
            copy=copy_binary.stored_readings(
                *columns(readings, accepted, checked.codes), checked.devices, checked.vehicles
            )
            if len(accepted)
            else b"",
            stored=accepted,
            rollups=NO_ROLLUPS,
            slots=NO_SLOTS,
            values=0,
            live=[],
        ),
        readings,
        accepted,
    )


def staging_copy(readings: ReadingBatch, plan: Plan) -> bytes:
    """The accepted readings as staging rows (ingest_store.insert_batch), for the rare
    batch some of whose readings were stored before."""
    accepted = plan.checked.accepted
    return copy_binary.readings(*columns(readings, accepted, plan.checked.codes + 1))


def restricted(readings: ReadingBatch, plan: Plan, stored: np.ndarray) -> Plan:
    """The plan for only these of its accepted rows (the others were stored before)."""
    return _with_stored(plan, readings, stored)


def _with_stored(plan: Plan, readings: ReadingBatch, stored: np.ndarray) -> Plan:
    if not len(stored):
        return replace(plan, stored=stored, rollups=NO_ROLLUPS, slots=NO_SLOTS, values=0, live=[])
    checked = plan.checked
    hashes = np.array([vehicle_hash(v) for v in checked.vehicles], dtype=np.int64)
    rows = rollup_columns(
        readings.cell[stored],
        readings.ts[stored],
        readings.values[stored],
        hashes[checked.codes[stored]],
    )
    return replace(
        plan,
        stored=stored,
        rollups=rows,
        slots=rollup_merge.slots(rows),
        values=int(rows.n.sum()),
        live=live_rows.encode(readings.take(stored), live_feed.CHUNK),
    )


Columns = tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray
]


def columns(readings: ReadingBatch, rows: np.ndarray, codes: np.ndarray) -> Columns:
    """The columns copy_binary takes, of these rows: time, device code, lat, lng, cell,
    speed, heading, values."""
    return (
        readings.ts[rows],
        codes[rows],
        readings.lat[rows],
        readings.lng[rows],
        readings.cell[rows],
        readings.speed_kmh[rows],
        readings.heading_deg[rows],
        readings.values[rows],
    )
