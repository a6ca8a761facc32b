"""Fixed-width binary rows from numpy columns, one byte block per field.

Structured numpy arrays with big-endian or sub-array fields are slow to fill (numpy
converts such fields element by element: 1 µs a row for a COPY row of a reading); a row
is built here as a 2-D uint8 array instead, each field a block of columns filled by one
contiguous copy of bytes already in their wire order.
"""

from __future__ import annotations

import numpy as np

Part = bytes | np.ndarray


def rows(count: int, parts: list[Part]) -> np.ndarray:
    """(count, width) bytes: each part is `bytes` (the same in every row) or an array of
    `count` rows (any shape after the first axis) whose bytes, in their own dtype's
    order, are the field."""
    blocks = [_block(count, part) for part in parts]
    out = np.empty((count, sum(block.shape[1] for block in blocks)), dtype=np.uint8)
    at = 0
    for block in blocks:
        out[:, at : at + block.shape[1]] = block
        at += block.shape[1]
    return out


def big_endian(values: np.ndarray, kind: str) -> np.ndarray:
    """`values` as `kind` (e.g. 'i8', 'f4') in network byte order, as PostgreSQL and
    msgpack want them."""
    return np.ascontiguousarray(values, dtype=np.dtype(kind).newbyteorder(">"))


def _block(count: int, part: Part) -> np.ndarray:
    if isinstance(part, bytes):
        return np.broadcast_to(np.frombuffer(part, dtype=np.uint8), (count, len(part)))
    data = np.ascontiguousarray(part)
    return data.view(np.uint8).reshape(count, data.itemsize * int(np.prod(data.shape[1:])))
