"""The OAuth scopes of the waste domain, with their consent texts."""

from __future__ import annotations

from hub.core.domain import ScopeInfo

BUSINESS = ScopeInfo(
    "waste:business",
    "회원님 사업장의 음식물 쓰레기 수거를 신청하고 수수료를 납부합니다.",
    "Request and pay food-waste pickups for your business's sites.",
)
COLLECT = ScopeInfo(
    "waste:collect",
    "담당 구역의 수거 경로를 보고 수거 용기의 태그를 스캔합니다.",
    "See the day's pickup routes in your districts and scan bins' tags.",
)
CITY = ScopeInfo(
    "waste:city",
    "구역별·사업장별 음식물 쓰레기 수거량과 요금표를 관리합니다.",
    "Manage tariffs, tags and collectors; see volumes per business.",
)
ALL = (BUSINESS, COLLECT, CITY)
