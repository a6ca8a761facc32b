"""The OAuth scopes of the notices domain, with their consent texts."""

from __future__ import annotations

from hub.core.domain import ScopeInfo

RECEIVE = ScopeInfo(
    "notices:receive",
    "이 앱으로 정부·지자체 알림(고지서, 과태료, 미세먼지 경보 등)을 받을 종류를 고르고,"
    " 받은 알림을 봅니다.",
    "Choose which government notices (bills, fines, fine-dust warnings …) you receive"
    " through this app, and read the notices you received.",
    citizen=True,
)
DELIVER = ScopeInfo(
    "notices:deliver",
    "앱이 시민에게 전달할 알림을 받을 웹훅을 등록하고, 전달 실패 목록을 보고 다시 보냅니다.",
    "Register the app's notice webhook, see its dead-lettered deliveries and redrive them.",
)
PUBLISH = ScopeInfo(
    "notices:publish",
    "기관의 알림을 시민에게 보내고 전달·열람 결과를 봅니다.",
    "Publish an agency's notices to citizens and see their delivery and read reports.",
)
OPERATE = ScopeInfo(
    "notices:operate",
    "시의 알림 업무를 운영합니다: 모든 기관의 알림 발송과 결과 조회, 발송 기관 등록.",
    "Operate the city's notices: publish and see reports for any agency, register publishers.",
)
ALL = (RECEIVE, DELIVER, PUBLISH, OPERATE)
