"""The OAuth scopes of the sensors domain, with their consent texts."""

from __future__ import annotations

from hub.core.domain import ScopeInfo

READ = ScopeInfo(
    "sensors:read",
    "구역별 도시 센서 측정값(미세먼지, 소음, 조도 등)을 조회합니다.",
    "Read city sensor values (fine dust, noise, light …) per area.",
)
PRECISE = ScopeInfo(
    "sensors:precise",
    "센서 차량의 정확한 위치를 조회합니다.",
    "See the exact positions of sensor vehicles.",
)
INGEST = ScopeInfo(
    "sensors:ingest",
    "센서 장치를 등록하고 측정값을 보냅니다.",
    "Register sensor devices and send their readings.",
)
ALL = (READ, PRECISE, INGEST)
