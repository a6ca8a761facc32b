"""The scope catalog: every OAuth scope a client can hold, explained for the consent page."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Scope(StrEnum):
    SENSORS_READ = "sensors:read"
    SENSORS_PRECISE = "sensors:precise"
    SENSORS_INGEST = "sensors:ingest"
    WASTE_REQUEST = "waste:request"
    WASTE_COLLECT = "waste:collect"
    WASTE_ADMIN = "waste:admin"
    PAYMENTS_BILL = "payments:bill"
    PAYMENTS_COLLECT = "payments:collect"
    PAYMENTS_REFUND = "payments:refund"
    PAYMENTS_READ = "payments:read"
    MOBILITY_READ = "mobility:read"
    MOBILITY_BOOK = "mobility:book"
    NOTICES_SEND = "notices:send"
    PROFILE = "profile"


@dataclass(frozen=True)
class ScopeInfo:
    ko: str
    en: str


CATALOG: dict[Scope, ScopeInfo] = {
    Scope.SENSORS_READ: ScopeInfo(
        "구역별 도시 센서 측정값(미세먼지, 소음, 조도 등)을 조회합니다.",
        "Read city sensor values (fine dust, noise, light …) per area.",
    ),
    Scope.SENSORS_PRECISE: ScopeInfo(
        "센서 차량의 정확한 위치를 조회합니다.",
        "See the exact positions of sensor vehicles.",
    ),
    Scope.SENSORS_INGEST: ScopeInfo(
        "센서 장치를 등록하고 측정값을 보냅니다.",
        "Register sensor devices and send their readings.",
    ),
    Scope.WASTE_REQUEST: ScopeInfo(
        "음식물 쓰레기 수거를 신청하고 수수료를 냅니다.",
        "Request food-waste pickups and pay their fees.",
    ),
    Scope.WASTE_COLLECT: ScopeInfo(
        "수거원으로서 수거통을 스캔하고 수거를 확인합니다.",
        "Scan bins and confirm collections as a collector.",
    ),
    Scope.WASTE_ADMIN: ScopeInfo(
        "수거 현장, 수거통과 수거량을 관리합니다.",
        "Manage collection sites, bins and collected volumes.",
    ),
    Scope.PAYMENTS_BILL: ScopeInfo(
        "지방세와 공공요금 고지서를 발행합니다.", "Issue bills for local taxes and public fees."
    ),
    Scope.PAYMENTS_COLLECT: ScopeInfo(
        "휴대폰 단말기로 납부를 받습니다.", "Collect payments on a phone used as a card terminal."
    ),
    Scope.PAYMENTS_REFUND: ScopeInfo("납부한 금액을 환불합니다.", "Refund payments."),
    Scope.PAYMENTS_READ: ScopeInfo(
        "고지서, 납부와 환불 내역을 조회합니다.", "Read bills, payments and refunds."
    ),
    Scope.MOBILITY_READ: ScopeInfo(
        "경로, KTX 시간표와 운임을 조회합니다.", "Search routes, KTX timetables and fares."
    ),
    Scope.MOBILITY_BOOK: ScopeInfo(
        "회원님을 대신해 KTX 좌석을 예약합니다.", "Book KTX seats on your behalf."
    ),
    Scope.NOTICES_SEND: ScopeInfo(
        "시민에게 정부 안내를 보냅니다.", "Send government notices to citizens."
    ),
    Scope.PROFILE: ScopeInfo("회원님의 이름과 계정 정보를 봅니다.", "See your name and account."),
}


class UnknownScope(ValueError):
    pass


def parse(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """Scopes from a space- or comma-separated string (or a list); unknown names refused."""
    names = text.replace(",", " ").split() if isinstance(text, str) else list(text)
    unknown = [name for name in names if name not in Scope._value2member_map_]
    if unknown:
        raise UnknownScope(
            f"unknown scope(s): {', '.join(unknown)}; known: {', '.join(s.value for s in Scope)}"
        )
    return sorted(set(names))


def satisfies(held: frozenset[str], required: list[list[str]]) -> bool:
    """Apollo's reading of @requiresScopes: any one inner list, all of its scopes."""
    return any(all(scope in held for scope in group) for group in required)
