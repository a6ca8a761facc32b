"""What the adapter's reference calls return: TAGO's own lists, under TAGO's codes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TagoCity:
    city_code: str  # "11" 서울 … (TAGO's numbering, not the 시도 code of 법정동)
    name: str  # "서울특별시"


@dataclass(frozen=True, slots=True)
class TagoStation:
    code: str  # nodeid, "NAT010000"
    name: str  # nodename, "서울"
    city_code: str


@dataclass(frozen=True, slots=True)
class VehicleKind:
    kind_id: str  # vehiclekndid, "00"
    name: str  # vehiclekndnm, "KTX"
