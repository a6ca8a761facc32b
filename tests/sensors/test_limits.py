"""Areas are bounded by their size as the arguments give it, before any cell is listed:
one coarse H3 cell, or a tall and thin box, used to be expanded first (a resolution-0
cell: 70 s with the loop blocked and 5 GB; a box 45° by 1e-9°: 1.5 GB).

The inputs here would be big, not huge: without the checks the hub lists their cells in
a moment and answers, or refuses them only afterwards and without naming the argument."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from h3.api import basic_int as h3

from tests.oauth import Hub

pytestmark = pytest.mark.db

SERIES = """
query ($area: AreaInput!) {
  sensorSeries(area: $area, metric: "pm2_5", from: "2026-11-24T00:00:00Z",
               to: "2026-11-24T01:00:00Z") { bucket }
}"""
JONGNO = (37.5735, 126.9790)


async def series(hub: Hub, area: dict[str, Any]) -> dict[str, Any]:
    token = await hub.token("sensors:read")
    async with httpx.AsyncClient(base_url=hub.url) as http:
        response = await asyncio.wait_for(
            http.post(
                "/graphql",
                json={"query": SERIES, "variables": {"area": area}},
                headers={"Authorization": f"Bearer {token}"},
                timeout=None,
            ),
            60,
        )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def refused(body: dict[str, Any], argument: str) -> str:
    assert body["data"] == {"sensorSeries": None}, body
    (error,) = body["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "argument": argument}
    message: str = error["message"]
    return message


def cell(resolution: int) -> str:
    return h3.int_to_str(h3.latlng_to_cell(*JONGNO, resolution))


async def test_a_coarse_cell_is_counted_before_it_is_expanded(auth_hub: Hub) -> None:
    # Resolution 3: 117,649 cells of resolution 9 (resolution 0 has 40 million).
    message = refused(await series(auth_hub, {"cells": [cell(3)]}), "cells")
    assert message == (
        "the area has more than 60,000 cells (H3 resolution 9); choose a smaller one"
    )
    # Cells the limit allows one by one add up: 4 of resolution 4, 16,807 cells each.
    ring = h3.grid_disk(h3.latlng_to_cell(*JONGNO, 4), 1)
    refused(await series(auth_hub, {"cells": [h3.int_to_str(c) for c in ring[:4]]}), "cells")


async def test_a_cell_the_limit_allows_still_answers(auth_hub: Hub) -> None:
    body = await series(auth_hub, {"cells": [cell(5)]})  # 2,401 cells
    assert body == {"data": {"sensorSeries": []}}


async def test_a_tall_thin_box_is_refused_by_its_sides(auth_hub: Hub) -> None:
    box = {"south": 37.0, "north": 39.0, "west": 127.0, "east": 127.000000001}
    message = refused(await series(auth_hub, {"bbox": box}), "bbox")
    assert message == "bbox is too large: each side at most 1 degree"


async def test_a_box_is_refused_by_its_estimated_cells(auth_hub: Hub) -> None:
    # 0.81 square degrees (under the old limit of one): about 75,000 cells.
    box = {"south": 37.0, "north": 37.9, "west": 126.5, "east": 127.4}
    message = refused(await series(auth_hub, {"bbox": box}), "bbox")
    assert message.startswith("the area has more than 60,000 cells")
