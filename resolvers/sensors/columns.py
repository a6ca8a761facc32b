"""A batch of readings as columns: what the ingest worker checks, stores and rolls up.

One Python object per reading (and a float per value) cost the worker more than the
database's work for it. A batch is decoded into numpy columns instead: binary messages
(message_binary.py) whole, with numpy, and JSON messages one by one with the fast parser.
Everything downstream (the registry checks, the COPY payload, the rollups) works on
these arrays; `Reading` objects are made only for whoever asks for them.

The batch decoder accepts exactly what the reference parsers (`message.parse`) accept,
with the same values: whatever its vectorised checks refuse is given to the reference,
which says why (or accepts it, if the fast check was stricter).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec
import numpy as np
from h3.api import basic_int as h3

from resolvers.sensors.catalog import metrics
from resolvers.sensors.message import (
    DECODER,
    H3_RESOLUTION,
    KOREA,
    MAX_AGE,
    MAX_FUTURE,
    MAX_MESSAGE_BYTES,
    PACK,
    Reading,
    Rejected,
    parse,
)
from resolvers.sensors.message_binary import EPOCH, HEADER, HEADER_SIZE, MAGIC, MICROSECOND

WIDTH = len(metrics())
_LOW = np.array([m.min for m in metrics()])
_HIGH = np.array([m.max for m in metrics()])
_IDS_CACHE = 100_000  # (device, vehicle) byte strings remembered; a city's fleet fits


@dataclass(slots=True)
class ReadingBatch:
    """Readings as columns. Times are microseconds since the Unix epoch (UTC); speed and
    heading NaN where a message had none; values float32 in catalog order, as stored."""

    device_ids: list[str]
    vehicle_ids: list[str]
    ts: np.ndarray  # int64
    lat: np.ndarray  # float64
    lng: np.ndarray  # float64
    cell: np.ndarray  # int64
    speed_kmh: np.ndarray  # float64
    heading_deg: np.ndarray  # float64
    values: np.ndarray  # float32, (rows, WIDTH)

    def __len__(self) -> int:
        return len(self.device_ids)

    def take(self, rows: np.ndarray) -> ReadingBatch:
        """These rows (indices or a mask), in this order."""
        index = np.flatnonzero(rows) if rows.dtype == bool else rows
        picked = index.tolist()
        return ReadingBatch(
            [self.device_ids[i] for i in picked],
            [self.vehicle_ids[i] for i in picked],
            self.ts[index],
            self.lat[index],
            self.lng[index],
            self.cell[index],
            self.speed_kmh[index],
            self.heading_deg[index],
            self.values[index],
        )

    def packed(self, row: int) -> bytes:
        return self.values[row].astype("<f4").tobytes()

    def content(self, row: int) -> tuple[object, ...]:
        """What a message says beside its key (device and time), comparable."""
        return (
            self.vehicle_ids[row],
            float(self.lat[row]),
            float(self.lng[row]),
            int(self.cell[row]),
            _optional(float(self.speed_kmh[row])),
            _optional(float(self.heading_deg[row])),
            self.packed(row),
        )

    def readings(self) -> list[Reading]:
        """One Reading per row, for in-process callers that want objects."""
        packed = self.values.astype("<f4").tobytes()
        size = WIDTH * 4
        values = self.values.astype(np.float64).tolist()
        return [
            Reading(
                device_id=device,
                vehicle_id=vehicle,
                ts=EPOCH + timedelta(microseconds=micros),
                lat=lat,
                lng=lng,
                cell=cell,
                speed_kmh=_optional(speed),
                heading_deg=_optional(heading),
                values=tuple(row_values),
                packed=packed[i * size : (i + 1) * size],
            )
            for i, (
                device,
                vehicle,
                micros,
                lat,
                lng,
                cell,
                speed,
                heading,
                row_values,
            ) in enumerate(
                zip(
                    self.device_ids,
                    self.vehicle_ids,
                    self.ts.tolist(),
                    self.lat.tolist(),
                    self.lng.tolist(),
                    self.cell.tolist(),
                    self.speed_kmh.tolist(),
                    self.heading_deg.tolist(),
                    values,
                    strict=True,
                )
            )
        ]

    @staticmethod
    def of(readings: Sequence[Reading]) -> ReadingBatch:
        return ReadingBatch(
            [r.device_id for r in readings],
            [r.vehicle_id for r in readings],
            np.array([(r.ts - EPOCH) // MICROSECOND for r in readings], dtype=np.int64),
            np.array([r.lat for r in readings], dtype=np.float64),
            np.array([r.lng for r in readings], dtype=np.float64),
            np.array([r.cell for r in readings], dtype=np.int64),
            np.array([_nan(r.speed_kmh) for r in readings], dtype=np.float64),
            np.array([_nan(r.heading_deg) for r in readings], dtype=np.float64),
            np.frombuffer(b"".join(r.packed for r in readings), dtype="<f4").reshape(-1, WIDTH),
        )

    @staticmethod
    def concat(parts: Sequence[ReadingBatch]) -> ReadingBatch:
        return ReadingBatch(
            [d for p in parts for d in p.device_ids],
            [v for p in parts for v in p.vehicle_ids],
            *(
                np.concatenate([getattr(p, name) for p in parts])
                for name in ("ts", "lat", "lng", "cell", "speed_kmh", "heading_deg", "values")
            ),
        )


def _optional(value: float) -> float | None:
    return None if value != value else value  # NaN: not sent


def _nan(value: float | None) -> float:
    return np.nan if value is None else value


class BatchDecoder:
    """Decodes batches of raw messages; remembers the id strings of binary messages (a
    fleet's few thousand devices), so a batch decodes no text but the new ones."""

    def __init__(self) -> None:
        self._ids: dict[bytes, tuple[int, str, str]] = {}

    def decode(
        self, raws: Sequence[bytes], now: datetime
    ) -> tuple[ReadingBatch, np.ndarray, list[tuple[int, Rejected]]]:
        """The accepted readings, the index in `raws` of each, and the rejected messages
        by index with the reason. Readings keep the order of `raws`."""
        binary = [i for i, raw in enumerate(raws) if raw[:2] == MAGIC]
        if not binary:
            return _json(raws, range(len(raws)), now)
        if len(binary) == len(raws):
            return self._binary(raws, now)
        chosen = set(binary)
        others = [i for i in range(len(raws)) if i not in chosen]
        fast, fast_rows, fast_rejects = self._binary([raws[i] for i in binary], now)
        slow, slow_rows, slow_rejects = _json(raws, others, now)
        rows = np.concatenate([np.asarray(binary)[fast_rows], slow_rows]).astype(np.int64)
        order = np.argsort(rows, kind="stable")
        rejects = [(binary[i], exc) for i, exc in fast_rejects] + slow_rejects
        rejects.sort(key=lambda item: item[0])
        return ReadingBatch.concat([fast, slow]).take(order), rows[order], rejects

    def _binary(
        self, raws: Sequence[bytes], now: datetime
    ) -> tuple[ReadingBatch, np.ndarray, list[tuple[int, Rejected]]]:
        # Messages of one length (a fleet sends a few) are rows of one 2-D byte array:
        # their fields are columns of it, sliced rather than gathered byte by byte.
        by_length: dict[int, list[int]] = {}
        for i, raw in enumerate(raws):
            by_length.setdefault(len(raw), []).append(i)
        parts, part_rows = [], []
        for length, members in by_length.items():
            if HEADER_SIZE <= length <= MAX_MESSAGE_BYTES:
                for rows, part in self._same_length(raws, members, length, now):
                    parts.append(part)
                    part_rows.append(rows)
        rows = np.concatenate(part_rows) if part_rows else np.zeros(0, dtype=np.int64)
        if len(parts) == 1:
            batch = parts[0]
        else:
            order = np.argsort(rows, kind="stable")
            batch = ReadingBatch.concat(parts).take(order) if parts else _empty()
            rows = rows[order]
        refused = np.ones(len(raws), dtype=bool)
        refused[rows] = False
        if not refused.any():
            return batch, rows, []
        # What the fast checks refused: the reference says why (or accepts it).
        rejects, extra, extra_rows = [], [], []
        for i in np.flatnonzero(refused).tolist():
            try:
                extra.append(parse(raws[i], now))
                extra_rows.append(i)
            except Rejected as exc:
                rejects.append((i, exc))
        if extra:
            rows = np.concatenate([rows, np.asarray(extra_rows, dtype=np.int64)])
            order = np.argsort(rows, kind="stable")
            batch = ReadingBatch.concat([batch, ReadingBatch.of(extra)]).take(order)
            rows = rows[order]
        return batch, rows, rejects

    def _same_length(
        self, raws: Sequence[bytes], members: list[int], length: int, now: datetime
    ) -> list[tuple[np.ndarray, ReadingBatch]]:
        """The valid messages among these of one length, by where their values start."""
        grid = np.frombuffer(b"".join([raws[i] for i in members]), dtype=np.uint8)
        grid = grid.reshape(len(members), length)
        head = np.ascontiguousarray(grid[:, :HEADER_SIZE]).view(HEADER).reshape(-1)
        ids = head["device_len"].astype(np.int64) + head["vehicle_len"]
        m = head["metric_count"].astype(np.int64)
        ok = (
            (head["magic"] == MAGIC)
            & (head["version"] == 1)
            & (head["device_len"] >= 1)
            & (head["device_len"] <= 64)
            & (head["vehicle_len"] >= 1)
            & (m >= 1)
            & (m <= WIDTH)
            & (HEADER_SIZE + ids + 4 * m == length)
        )
        index = np.asarray(members, dtype=np.int64)
        found = []
        for width in np.unique(ids[ok]).tolist():
            chosen = np.flatnonzero(ok & (ids == width))
            count = (length - HEADER_SIZE - width) // 4
            values = np.full((len(chosen), WIDTH), np.nan, dtype="<f4")
            first = HEADER_SIZE + width
            values[:, :count] = np.ascontiguousarray(grid[chosen, first : first + 4 * count]).view(
                "<f4"
            )
            names = grid[chosen, HEADER_SIZE:first]
            part = self._checked(head[chosen], names, values, index[chosen], raws, now)
            if part is not None:
                found.append(part)
        return found

    def _checked(
        self,
        head: np.ndarray,
        names: np.ndarray,
        values: np.ndarray,
        rows: np.ndarray,
        raws: Sequence[bytes],
        now: datetime,
    ) -> tuple[np.ndarray, ReadingBatch] | None:
        """The rows whose every field passes, as a batch; None if none does."""
        # Damaged messages carry signalling NaNs and overflows: refused, not warned of.
        with np.errstate(invalid="ignore", over="ignore"):
            wide = values.astype(np.float64)
            absent = np.isnan(wide)
            now_us = (now - EPOCH) // MICROSECOND
            ts = head["ts"].astype(np.int64)
            lat, lng = head["lat"].astype(np.float64), head["lng"].astype(np.float64)
            speed = head["speed_kmh"].astype(np.float64)
            heading = head["heading_deg"].astype(np.float64)
            lat_min, lng_min, lat_max, lng_max = KOREA
            ok = (ts <= now_us + MAX_FUTURE // MICROSECOND) & (
                ts >= now_us - MAX_AGE // MICROSECOND
            )
            ok &= (lat >= lat_min) & (lat <= lat_max) & (lng >= lng_min) & (lng <= lng_max)
            ok &= np.isnan(speed) | ((speed >= 0) & (speed <= 250))
            ok &= np.isnan(heading) | ((heading >= 0) & (heading <= 360))
            ok &= (absent | ((wide >= _LOW) & (wide <= _HIGH))).all(axis=1)
            ok &= ~absent.all(axis=1)
        values[absent] = np.nan  # the one NaN the JSON path stores (a device's may differ)
        devices: list[str] = []
        vehicles: list[str] = []
        good: list[int] = []
        known = self._ids
        device_lengths = head["device_len"].tolist()
        width = names.shape[1]
        blob = names.tobytes()
        for j, fine in enumerate(ok.tolist()):
            if not fine:
                continue
            key = blob[j * width : (j + 1) * width]
            ids = known.get(key)
            if ids is None or ids[0] != device_lengths[j]:
                ids = _ids(device_lengths[j], key)
                if ids is None:
                    continue
                if len(known) >= _IDS_CACHE:
                    known.clear()
                known[key] = ids
            devices.append(ids[1])
            vehicles.append(ids[2])
            good.append(j)
        if not good:
            return None
        chosen = np.asarray(good, dtype=np.int64)
        lat, lng = lat[chosen], lng[chosen]
        cells = [
            h3.latlng_to_cell(a, b, H3_RESOLUTION)
            for a, b in zip(lat.tolist(), lng.tolist(), strict=True)
        ]
        return rows[chosen], ReadingBatch(
            devices,
            vehicles,
            ts[chosen],
            lat,
            lng,
            np.asarray(cells, dtype=np.int64),
            speed[chosen],
            heading[chosen],
            values[chosen],
        )


def _empty() -> ReadingBatch:
    return ReadingBatch.of([])


def _ids(device_len: int, raw: bytes) -> tuple[int, str, str] | None:
    """The ids of a binary message if they are valid text of the right lengths."""
    try:
        device = raw[:device_len].decode("ascii")
        vehicle = raw[device_len:].decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not 1 <= len(vehicle) <= 64:
        return None
    return device_len, device, vehicle


def _json(
    raws: Sequence[bytes], indices: Sequence[int], now: datetime
) -> tuple[ReadingBatch, np.ndarray, list[tuple[int, Rejected]]]:
    """JSON messages: each decoded by msgspec straight into the columns' lists (types,
    lengths and ranges checked in C), then the position, time and emptiness checked as
    arrays; whatever fails anywhere is read again by `parse`, which says why."""
    devices: list[str] = []
    vehicles: list[str] = []
    micros: list[int] = []
    lats: list[float] = []
    lngs: list[float] = []
    speeds: list[float | None] = []
    headings: list[float | None] = []
    packed: list[bytes] = []
    rows: list[int] = []
    slow: list[int] = []
    decode, pack, iso, astuple = (
        DECODER.decode,
        PACK.pack,
        datetime.fromisoformat,
        msgspec.structs.astuple,
    )
    for i in indices:
        raw = raws[i]
        try:
            if len(raw) > MAX_MESSAGE_BYTES:
                raise ValueError
            message = decode(raw)
            when = iso(message.ts)
            if when.tzinfo is None:
                raise ValueError
        except (msgspec.DecodeError, ValueError):
            slow.append(i)
            continue
        devices.append(message.device_id)
        vehicles.append(message.vehicle_id)
        micros.append((when - EPOCH) // MICROSECOND)
        lats.append(message.position.lat)
        lngs.append(message.position.lng)
        speeds.append(message.speed_kmh)
        headings.append(message.heading_deg)
        packed.append(pack(*astuple(message.metrics)))
        rows.append(i)
    ts = np.array(micros, dtype=np.int64)
    lat = np.array(lats, dtype=np.float64)
    lng = np.array(lngs, dtype=np.float64)
    values = np.frombuffer(b"".join(packed), dtype="<f4").reshape(-1, WIDTH)
    now_us = (now - EPOCH) // MICROSECOND
    lat_min, lng_min, lat_max, lng_max = KOREA
    ok = (ts <= now_us + MAX_FUTURE // MICROSECOND) & (ts >= now_us - MAX_AGE // MICROSECOND)
    ok &= (lat >= lat_min) & (lat <= lat_max) & (lng >= lng_min) & (lng <= lng_max)
    ok &= ~np.isnan(values).all(axis=1)
    index = np.asarray(rows, dtype=np.int64)
    if not ok.all():
        slow += index[~ok].tolist()
        keep = np.flatnonzero(ok)
        kept = keep.tolist()
        devices = [devices[j] for j in kept]
        vehicles = [vehicles[j] for j in kept]
        speeds = [speeds[j] for j in kept]
        headings = [headings[j] for j in kept]
        ts, lat, lng, values, index = ts[keep], lat[keep], lng[keep], values[keep], index[keep]
    cells = [
        h3.latlng_to_cell(a, b, H3_RESOLUTION)
        for a, b in zip(lat.tolist(), lng.tolist(), strict=True)
    ]
    batch = ReadingBatch(
        devices,
        vehicles,
        ts,
        lat,
        lng,
        np.asarray(cells, dtype=np.int64),
        np.array([np.nan if x is None else x for x in speeds], dtype=np.float64),
        np.array([np.nan if x is None else x for x in headings], dtype=np.float64),
        values,
    )
    if not slow:
        return batch, index, []
    readings: list[Reading] = []
    found: list[int] = []
    rejects: list[tuple[int, Rejected]] = []
    for i in sorted(slow):
        try:
            readings.append(parse(raws[i], now))
            found.append(i)
        except Rejected as exc:
            rejects.append((i, exc))
    if readings:
        index = np.concatenate([index, np.asarray(found, dtype=np.int64)])
        order = np.argsort(index, kind="stable")
        batch = ReadingBatch.concat([batch, ReadingBatch.of(readings)]).take(order)
        index = index[order]
    return batch, index, rejects
