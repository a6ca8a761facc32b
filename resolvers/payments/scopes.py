"""The OAuth scopes of the payments domain, with their consent texts."""

from __future__ import annotations

from hub.core.domain import ScopeInfo

COLLECT = ScopeInfo(
    "payments:collect",
    "공무원 단말기로 관할 구역의 고지서 요금을 카드로 수납합니다.",
    "Collect bills of the terminal's district by card (an official's phone).",
)
SUPERVISE = ScopeInfo(
    "payments:supervise",
    "단말기를 등록·정지하고 결제를 환불합니다.",
    "Enroll and disable terminals, and refund payments.",
)
FINANCE = ScopeInfo(
    "payments:finance",
    "원장 잔액과 정산 대사 결과를 조회합니다.",
    "Read ledger balances and reconciliation reports.",
)
PAY = ScopeInfo(
    "payments:pay",
    "회원님의 지방세·공과금 고지서를 조회하고 납부합니다.",
    "Look up and pay your local tax and public fee bills.",
    citizen=True,
)
ALL = (COLLECT, SUPERVISE, FINANCE, PAY)
