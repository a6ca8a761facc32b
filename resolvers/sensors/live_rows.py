"""A committed batch (columns) in the live feed's format (live_feed.py: msgpack, a list
of rows per message), without making a `Reading` per row first."""

from __future__ import annotations

from datetime import timedelta

import msgspec

from resolvers.sensors.columns import WIDTH, ReadingBatch
from resolvers.sensors.message_binary import EPOCH

_encoder = msgspec.msgpack.Encoder()


def encode(batch: ReadingBatch, chunk: int) -> list[bytes]:
    """Messages of at most `chunk` rows, each as live_feed.decode reads it."""
    size = WIDTH * 4
    packed = batch.values.astype("<f4").tobytes()
    rows = [
        (
            device,
            vehicle,
            EPOCH + timedelta(microseconds=micros),
            lat,
            lng,
            cell,
            None if speed != speed else speed,  # NaN: not sent
            None if heading != heading else heading,
            packed[i * size : (i + 1) * size],
        )
        for i, (device, vehicle, micros, lat, lng, cell, speed, heading) in enumerate(
            zip(
                batch.device_ids,
                batch.vehicle_ids,
                batch.ts.tolist(),
                batch.lat.tolist(),
                batch.lng.tolist(),
                batch.cell.tolist(),
                batch.speed_kmh.tolist(),
                batch.heading_deg.tolist(),
                strict=True,
            )
        )
    ]
    return [_encoder.encode(rows[i : i + chunk]) for i in range(0, len(rows), chunk)]
