"""The OAuth scopes of the mobility domain, with their consent texts."""

from __future__ import annotations

from hub.core.domain import ScopeInfo

PLAN = ScopeInfo(
    "mobility:plan",
    "출발지와 도착지 사이의 도보·대중교통·KTX 경로와 좌석 현황을 조회합니다.",
    "Plan journeys with walking, local transit and KTX trains, with seats left.",
    citizen=True,
)
BOOK = ScopeInfo(
    "mobility:book",
    "회원님을 위해 열차 좌석을 예약·결제하고 승차권을 발급하며, 회원님의 예매 내역을"
    " 조회하고 취소·환불합니다. 결제는 회원님이 확인한 금액만 청구됩니다.",
    "Book and pay for train seats for you, issue your tickets, list your bookings, and"
    " cancel them for a refund. Only the amount you confirm is charged.",
    citizen=True,
)
ALL = (PLAN, BOOK)
