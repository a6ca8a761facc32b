"""The order in which a collector's truck visits the day's sites: an open path from the
depot (without one, from whichever site makes it shortest), as short as OR-Tools' routing
solver finds it within a time bound.

Distances are great-circle metres between positions (no road network). The solver starts
from the nearest-neighbour path and improves it with guided local search, so its answer is
never longer than nearest neighbour's. It runs in a child process (this file run as a
script): OR-Tools holds the GIL while it searches, which in the hub's process would stall
every request and subscription for up to the time bound; a child also cannot take the hub
down if the native code crashes. If the child fails or overruns, nearest neighbour is the
answer (logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

log = logging.getLogger(__name__)

EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)
# Guided local search runs until its time limit: small routes converge in a fraction of
# a second, so the bound grows with the route and stops at a second.
SOLVE_SECONDS_MAX = 1.0
SOLVE_SECONDS_BASE, SOLVE_SECONDS_PER_STOP = 0.05, 0.005
CHILD_GRACE_SECONDS = 2.0  # starting Python and OR-Tools, on a busy machine


class Point(NamedTuple):
    lat: float
    lng: float


def metres(a: Point, b: Point) -> float:
    """Great-circle (haversine) distance."""
    phi1, phi2 = math.radians(a.lat), math.radians(b.lat)
    dphi, dlam = phi2 - phi1, math.radians(b.lng - a.lng)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlam / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, h)))


def length(start: Point | None, stops: Sequence[Point], order: Sequence[int]) -> float:
    """Metres from `start` (None: from the first stop) through the stops in `order`."""
    path = [*([start] if start else []), *(stops[i] for i in order)]
    return sum(metres(a, b) for a, b in itertools.pairwise(path))


def nearest_neighbour(start: Point, stops: Sequence[Point]) -> list[int]:
    """From each position, the closest stop not visited yet (ties: the earlier one)."""
    left, here, order = list(range(len(stops))), start, []
    while left:
        best = min(left, key=lambda i: metres(here, stops[i]))
        left.remove(best)
        order.append(best)
        here = stops[best]
    return order


def solve_seconds(stops: int) -> float:
    return min(SOLVE_SECONDS_MAX, SOLVE_SECONDS_BASE + SOLVE_SECONDS_PER_STOP * stops)


async def order(start: Point | None, stops: Sequence[Point]) -> list[int]:
    """Indices of `stops` in visiting order, from `start` (None: from whichever stop makes
    the path shortest), ending anywhere."""
    if start is None:  # first guess: from the first stop
        first = [0, *(i + 1 for i in nearest_neighbour(stops[0], stops[1:]))] if stops else []
    else:
        first = nearest_neighbour(start, stops)
    if len(stops) < 3:
        return first  # nothing to improve
    seconds = solve_seconds(len(stops))
    # Row 0: from the depot (free where there is none); column 0: back to it, never taken.
    depot = [0 if start is None else round(metres(start, b)) for b in stops]
    problem = {
        "matrix": [[0, *depot], *([0, *(round(metres(a, b)) for b in stops)] for a in stops)],
        "seed": first,
        "seconds": seconds,
    }
    try:
        solved = await _in_child(problem, seconds + CHILD_GRACE_SECONDS)
    except (OSError, TimeoutError, ValueError, KeyError) as exc:
        log.warning("waste.route.solver_failed stops=%d error=%r", len(stops), exc)
        return first
    if sorted(solved) != list(range(len(stops))):
        log.warning("waste.route.solver_no_solution stops=%d", len(stops))
        return first
    return solved


async def _in_child(problem: dict[str, object], bound: float) -> list[int]:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__)),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(child.communicate(json.dumps(problem).encode()), bound)
    finally:
        if child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            await child.wait()
    if child.returncode != 0:
        raise ValueError(f"solver exited {child.returncode}: {err.decode()[-500:]}")
    return [int(i) for i in json.loads(out)["order"]]


def solve(matrix: list[list[int]], seed: list[int], seconds: float) -> list[int]:
    """Node 0 is the depot, 1..n the stops; a free end node (0 m from anywhere) makes the
    path open. Arc costs come from a matrix the solver reads without calling Python. The
    nearest-neighbour path `seed` is the first solution; [] if the solver finds none."""
    from ortools.constraint_solver import pywrapcp, routing_enums_pb2

    n = len(matrix) - 1
    costs = [[*row, 0] for row in matrix] + [[0] * (n + 2)]
    manager = pywrapcp.RoutingIndexManager(n + 2, 1, [0], [n + 1])
    routing = pywrapcp.RoutingModel(manager)
    routing.SetArcCostEvaluatorOfAllVehicles(routing.RegisterTransitMatrix(costs))
    params = pywrapcp.DefaultRoutingSearchParameters()
    params.local_search_metaheuristic = (
        routing_enums_pb2.LocalSearchMetaheuristic.GUIDED_LOCAL_SEARCH
    )
    params.time_limit.FromMilliseconds(round(1000 * seconds))
    routing.CloseModelWithParameters(params)
    initial = routing.ReadAssignmentFromRoutes([[i + 1 for i in seed]], True)
    solution = initial and routing.SolveFromAssignmentWithParameters(initial, params)
    if not solution:
        return []
    found, index = [], solution.Value(routing.NextVar(routing.Start(0)))
    while not routing.IsEnd(index):
        found.append(manager.IndexToNode(index) - 1)
        index = solution.Value(routing.NextVar(index))
    return found


if __name__ == "__main__":  # the child: a problem on stdin, the order on stdout
    asked = json.load(sys.stdin)
    json.dump({"order": solve(asked["matrix"], asked["seed"], asked["seconds"])}, sys.stdout)
