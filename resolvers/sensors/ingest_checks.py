"""A batch's readings against the device registry and against each other, as arrays.

Per reading: its device must be registered, not disabled, and on the vehicle the message
names; and one device sends each timestamp once (the same message twice in a batch is a
producer's retry, a redelivery; different content under the same key is a duplicate).
The common case (every reading fine) costs a dictionary lookup per reading and a sort;
only the readings that fail are looked at one by one, to say why.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from resolvers.sensors.columns import ReadingBatch


@dataclass(frozen=True)
class Checked:
    accepted: np.ndarray  # row indices, in batch order
    codes: np.ndarray  # per row: its device's place in `devices`; -1 where refused
    devices: list[str]  # the batch's registered, enabled devices
    vehicles: list[str]  # the vehicle each of `devices` is registered on
    rejects: list[tuple[int, tuple[str, str]]]  # row, (reason, detail); in row order
    redelivered: int


def check_batch(
    readings: ReadingBatch, fresh: np.ndarray, states: dict[str, tuple[str, bool]]
) -> Checked:
    """`fresh` masks the rows to check (the others were stored by an earlier commit);
    `states` is device id → (registered vehicle id, disabled?) for the batch's devices."""
    devices = sorted(device for device, (_, disabled) in states.items() if not disabled)
    vehicles = [states[device][0] for device in devices]
    code_of = {pair: i for i, pair in enumerate(zip(devices, vehicles, strict=True))}
    codes = np.fromiter(
        (
            code_of.get(pair, -1)
            for pair in zip(readings.device_ids, readings.vehicle_ids, strict=True)
        ),
        dtype=np.int64,
        count=len(readings),
    )
    rejects: list[tuple[int, tuple[str, str]]] = []
    for row in np.flatnonzero(fresh & (codes < 0)).tolist():
        rejects.append((row, _refusal(readings.device_ids[row], states)))
    codes[~fresh] = -1

    # The same device and time twice: sorted by (device, time, row), a repeat follows
    # the first of its key.
    rows = np.flatnonzero(codes >= 0)
    order = rows[np.lexsort((rows, readings.ts[rows], codes[rows]))]
    repeat = np.zeros(len(order), dtype=bool)
    repeat[1:] = (codes[order][1:] == codes[order][:-1]) & (
        readings.ts[order][1:] == readings.ts[order][:-1]
    )
    redelivered = 0
    if repeat.any():
        first = order[np.maximum.accumulate(np.where(repeat, 0, np.arange(len(order))))]
        for position in np.flatnonzero(repeat).tolist():
            row, original = int(order[position]), int(first[position])
            codes[row] = -1
            if readings.content(row) == readings.content(original):
                redelivered += 1  # the same message twice: a producer's retry
            else:
                rejects.append((row, ("duplicate", "same device and timestamp earlier in batch")))
    rejects.sort(key=lambda item: item[0])
    return Checked(np.flatnonzero(codes >= 0), codes, devices, vehicles, rejects, redelivered)


def _refusal(device: str, states: dict[str, tuple[str, bool]]) -> tuple[str, str]:
    state = states.get(device)
    if state is None:
        return "unknown_device", f"{device} is not registered"
    if state[1]:
        return "disabled_device", f"{device} is disabled"
    return "vehicle_mismatch", f"{device} is on {state[0]}"
