"""A committed batch (columns) in the live feed's format, built with numpy.

live_feed.py sends msgpack: per message an array of rows (device, vehicle, ts, lat, lng,
cell, speed, heading, packed values), which `live_feed.decode` reads. Making a tuple, a
datetime and a bytes object per row for msgspec cost the worker more than any other step
of a batch, so the rows' msgpack bytes are written here directly: rows of one shape
(the same ids' lengths, a speed and a heading present or not) are one structured numpy
array of bytes (byte_rows.py). Rows come out by shape, then device, then time, and a
message holds rows of one shape: a live view has no order across devices, and each
device's readings stay in time order.
"""

from __future__ import annotations

import itertools
import struct

import msgspec
import numpy as np

from resolvers.sensors.byte_rows import Part, big_endian
from resolvers.sensors.byte_rows import rows as byte_rows
from resolvers.sensors.columns import WIDTH, ReadingBatch

_EXT_TIMESTAMP = b"\xc7\x0c\xff"  # ext 8, 12 bytes, type -1: timestamp 96


def encode(batch: ReadingBatch, chunk: int) -> list[bytes]:
    """Messages of at most `chunk` rows, each as live_feed.decode reads it."""
    if not len(batch):
        return []
    devices = sorted(set(zip(batch.device_ids, batch.vehicle_ids, strict=True)))
    code_of = {pair: i for i, pair in enumerate(devices)}
    codes = np.fromiter(
        (code_of[pair] for pair in zip(batch.device_ids, batch.vehicle_ids, strict=True)),
        dtype=np.int64,
        count=len(batch),
    )
    # fixarray of 9, then the two ids as msgpack strings: one byte string per device.
    heads = [b"\x99" + msgspec.msgpack.encode(d) + msgspec.msgpack.encode(v) for d, v in devices]
    head_len = np.array([len(h) for h in heads], dtype=np.int64)[codes]
    has_speed = ~np.isnan(batch.speed_kmh)
    has_heading = ~np.isnan(batch.heading_deg)
    shape = (head_len * 2 + has_speed) * 2 + has_heading
    order = np.lexsort((batch.ts, codes, shape))
    shape = shape[order]
    starts = [0, *(np.flatnonzero(shape[1:] != shape[:-1]) + 1).tolist(), len(order)]
    messages = []
    for start, end in itertools.pairwise(starts):
        rows = order[start:end]
        first = rows[0]
        micros = batch.ts[rows]
        block = byte_rows(
            len(rows),
            [
                np.array(heads, dtype=f"S{head_len[first]}")[codes[rows]],
                _EXT_TIMESTAMP,
                big_endian(micros % 1_000_000 * 1000, "u4"),
                big_endian(micros // 1_000_000, "i8"),
                b"\xcb",  # float 64
                big_endian(batch.lat[rows], "f8"),
                b"\xcb",
                big_endian(batch.lng[rows], "f8"),
                b"\xcf",  # uint 64
                big_endian(batch.cell[rows], "u8"),
                *_optional(batch.speed_kmh[rows], bool(has_speed[first])),
                *_optional(batch.heading_deg[rows], bool(has_heading[first])),
                b"\xc5" + struct.pack(">H", WIDTH * 4),  # bin 16
                np.ascontiguousarray(batch.values[rows], dtype="<f4"),
            ],
        )
        for i in range(0, len(rows), chunk):
            part = block[i : i + chunk]
            messages.append(_array_header(len(part)) + part.tobytes())
    return messages


def _optional(values: np.ndarray, present: bool) -> list[Part]:
    return [b"\xcb", big_endian(values, "f8")] if present else [b"\xc0"]  # float 64, nil


def _array_header(count: int) -> bytes:
    if count < 16:
        return bytes([0x90 | count])
    if count < 2**16:
        return b"\xdc" + struct.pack(">H", count)
    return b"\xdd" + struct.pack(">I", count)
