"""Walking between two points when no service measured the way: the straight line
lengthened by a detour factor, at 4.5 km/h.

The adapter answers ODsay's "within 700 m" refusal with such a walk, and the sandbox
measures its walks the same way.
"""

from __future__ import annotations

import math

EARTH_RADIUS_M = 6_371_008.8
DETOUR = 1.3  # streets are longer than the straight line (1.2-1.4 in Korean cities)
METERS_PER_MINUTE = 75.0  # 4.5 km/h


def straight_m(from_lat: float, from_lng: float, to_lat: float, to_lng: float) -> float:
    """Great-circle distance in metres (haversine)."""
    phi1, phi2 = math.radians(from_lat), math.radians(to_lat)
    dphi, dlambda = phi2 - phi1, math.radians(to_lng - from_lng)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(h))


def walk_m(from_lat: float, from_lng: float, to_lat: float, to_lng: float) -> int:
    return round(straight_m(from_lat, from_lng, to_lat, to_lng) * DETOUR)


def minutes(meters: int) -> int:
    """Minutes to walk `meters`, rounded up; at least 1."""
    return max(1, math.ceil(meters / METERS_PER_MINUTE))
