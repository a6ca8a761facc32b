"""A display message's polygon area, as the targeting worker holds it: the resolution-9
cells whose centres lie inside, holes left out. (The module of end-to-end display tests
only sends polygons that are refused; units are targeted by these cells whatever the kind
of area, so this is where a polygon's inside and outside are checked.)"""

from __future__ import annotations

import pytest
from h3.api import basic_int as h3

from hub.core.errors import BadUserInput
from resolvers.notices import displays_area

YEOKSAM = (37.5007, 127.0363)
SEOLLEUNG = (37.5045, 127.0489)
CITY_HALL = (37.5665, 126.9780)


def square(centre: tuple[float, float], half: float) -> list[list[float]]:
    """A closed GeoJSON ring ([lng, lat]) around `centre`, `half` degrees each way."""
    lat, lng = centre
    corners = [(lng - half, lat - half), (lng + half, lat - half), (lng + half, lat + half),
               (lng - half, lat + half), (lng - half, lat - half)]  # fmt: skip
    return [[x, y] for x, y in corners]


def cell(spot: tuple[float, float]) -> int:
    return int(h3.latlng_to_cell(*spot, displays_area.RESOLUTION))


def test_a_polygon_holds_the_cells_inside_it_and_not_those_outside() -> None:
    area = displays_area.of_polygon({"type": "Polygon", "coordinates": [square(YEOKSAM, 0.02)]})
    assert area.kind == "polygon" and area.district_code is None
    assert cell(YEOKSAM) in area.cells and cell(SEOLLEUNG) in area.cells
    assert cell(CITY_HALL) not in area.cells
    assert displays_area.expand(area.compacted) == area.cells  # as it is stored


def test_a_polygons_hole_is_outside_it() -> None:
    outer, hole = square(YEOKSAM, 0.02), square(SEOLLEUNG, 0.003)
    area = displays_area.of_polygon({"type": "Polygon", "coordinates": [outer, hole[::-1]]})
    assert cell(YEOKSAM) in area.cells and cell(SEOLLEUNG) not in area.cells


def test_a_polygon_too_small_to_hold_a_cell_centre_is_refused() -> None:
    with pytest.raises(BadUserInput, match="no resolution-9 cell centre"):
        displays_area.of_polygon({"type": "Polygon", "coordinates": [square(YEOKSAM, 0.0001)]})
