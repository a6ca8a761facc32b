"""The area of a display message: a district, a GeoJSON polygon or H3 cells, checked for
size before anything is expanded, then held as resolution-9 cells (the resolution the
sensors domain places units at), stored compacted.

Sizes are bounded before work: a polygon by its vertices and the cells its bounding box
could hold, a list of cells by its length and the resolution-9 cells each would expand to
(a resolution-0 cell is 40 million of them, refused without expanding it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from h3.api import basic_int as h3

from hub.core.errors import BadUserInput
from resolvers.platform import districts

RESOLUTION = 9
MAX_CELLS = 25_000  # about 1,800 km²: the largest 시군구 (홍천군, 24,294 cells) fits
MAX_GIVEN_CELLS = 2_000
MAX_VERTICES = 5_000
CELL_KM2 = 0.0725  # a resolution-9 cell in Korea (0.072 in the north to 0.082 in Jeju)
KOREA = (33.0, 124.5, 38.7, 132.0)  # lat_min, lng_min, lat_max, lng_max


@dataclass(frozen=True)
class Area:
    kind: str  # district, polygon, cells
    district_code: str | None
    cells: frozenset[int]  # resolution 9

    @property
    def compacted(self) -> list[int]:
        return sorted(h3.compact_cells(list(self.cells)))


def texts(cells: Iterable[int]) -> list[str]:
    return [h3.int_to_str(c) for c in cells]


def expand(compacted: Iterable[int]) -> frozenset[int]:
    return frozenset(h3.uncompact_cells(list(compacted), RESOLUTION))


async def of_district(pool: asyncpg.Pool, code: str) -> Area:
    boundary = await districts.boundary(pool, districts.check_code(code))
    if boundary is None:
        raise BadUserInput(f"no district has the code {code!r}", argument="districtCode")
    return Area("district", code, _filled(boundary, "districtCode"))


def of_polygon(geometry: Any) -> Area:
    if not isinstance(geometry, dict) or geometry.get("type") != "Polygon":
        raise BadUserInput(
            'polygon must be a GeoJSON Polygon: {"type": "Polygon", "coordinates": [[[lng, lat],'
            " …]]}",
            argument="polygon",
        )
    rings = geometry.get("coordinates")
    if not isinstance(rings, list) or not rings or not all(isinstance(r, list) for r in rings):
        raise BadUserInput("polygon coordinates must be a list of rings", argument="polygon")
    vertices = sum(len(ring) for ring in rings)
    if vertices > MAX_VERTICES:
        raise BadUserInput(
            f"polygon has {vertices} vertices; at most {MAX_VERTICES}", argument="polygon"
        )
    points = [_point(p) for ring in rings for p in ring]
    if any(len(ring) < 4 or ring[0] != ring[-1] for ring in rings):
        raise BadUserInput(
            "each polygon ring needs 4 or more positions, the last equal to the first",
            argument="polygon",
        )
    lats, lngs = [lat for lat, _ in points], [lng for _, lng in points]
    mid = math.radians((min(lats) + max(lats)) / 2)
    box_km2 = (max(lats) - min(lats)) * 111.32 * (max(lngs) - min(lngs)) * 111.32 * math.cos(mid)
    if box_km2 / CELL_KM2 > MAX_CELLS:
        raise BadUserInput(
            f"polygon spans about {box_km2:,.0f} km²; a display message covers at most"
            f" {MAX_CELLS * CELL_KM2:,.0f} km² (draw a smaller area or send several)",
            argument="polygon",
        )
    return Area("polygon", None, _filled({"type": "Polygon", "coordinates": rings}, "polygon"))


def of_cells(given: Sequence[str]) -> Area:
    if not given:
        raise BadUserInput("cells is empty", argument="cells")
    if len(given) > MAX_GIVEN_CELLS:
        raise BadUserInput(
            f"{len(given)} cells; at most {MAX_GIVEN_CELLS} (use coarser cells)", argument="cells"
        )
    parsed = []
    for text in given:
        try:
            cell = h3.str_to_int(text)
            valid = h3.is_valid_cell(cell)
        except (ValueError, TypeError):
            valid = False
        if not valid:
            raise BadUserInput(f"{text!r} is not an H3 cell", argument="cells")
        if h3.get_resolution(cell) > RESOLUTION:
            raise BadUserInput(
                f"{text!r} is finer than resolution {RESOLUTION}, the resolution units are"
                " placed at",
                argument="cells",
            )
        parsed.append(cell)
    expanded = sum(7 ** (RESOLUTION - h3.get_resolution(cell)) for cell in set(parsed))
    if expanded > MAX_CELLS:
        raise BadUserInput(
            f"those cells cover about {expanded:,} resolution-{RESOLUTION} cells; at most"
            f" {MAX_CELLS:,} (resolution 5 is about 175 km² a cell)",
            argument="cells",
        )
    cells = frozenset(h3.uncompact_cells(list(set(parsed)), RESOLUTION))
    return Area("cells", None, cells)


def _point(position: Any) -> tuple[float, float]:
    if (
        not isinstance(position, list)
        or len(position) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in position)
    ):
        raise BadUserInput("each position is [lng, lat] in degrees", argument="polygon")
    lng, lat = float(position[0]), float(position[1])
    lat_min, lng_min, lat_max, lng_max = KOREA
    if not (lat_min <= lat <= lat_max and lng_min <= lng <= lng_max):
        raise BadUserInput(
            f"position [{lng}, {lat}] is outside Korea (positions are [lng, lat])",
            argument="polygon",
        )
    return lat, lng


def _filled(geometry: dict[str, Any], argument: str) -> frozenset[int]:
    """The resolution-9 cells whose centres lie inside."""
    try:
        cells = frozenset(h3.geo_to_cells(geometry, RESOLUTION))
    except (ValueError, TypeError) as exc:
        raise BadUserInput(f"the area is not a valid polygon: {exc}", argument=argument) from exc
    if not cells:
        raise BadUserInput(
            "the area holds no resolution-9 cell centre (about 350 m across): draw it larger",
            argument=argument,
        )
    if len(cells) > MAX_CELLS:
        raise BadUserInput(f"the area has more than {MAX_CELLS:,} cells", argument=argument)
    return cells
