"""The agencynotice adapter against its sandbox agency over real HTTP: submissions signed,
sent again until taken and verified into notices; forged, stale, replayed and malformed
ones refused with their code; key rotation; receipts recorded once per notice and status."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapters.agencynotice import AgencyNoticeSettings, AgencyNoticeSource, adapter, parse, wire
from adapters.agencynotice.sandbox import (
    AGENCY,
    API_KEY,
    SANDBOX,
    SANDBOX_CITIZEN,
    SIGNING_SECRET,
    Config,
    create_app,
    settings_for,
)
from adapters.errors import UpstreamRejected, UpstreamTimeout
from adapters.kinds import (
    AgencyNotice,
    NoticePayment,
    NoticeRejected,
    NoticeReport,
    NoticeUrgency,
    RejectReason,
    ReportStatus,
)
from adapters.sandbox.server import RunningSandbox, Sandbox, running

BUDGET = 1.0
POLICE = "1320000"  # 경찰청
CITIZEN = wire.citizen_ref("TEST-CI-0002", b"test-linking-key")
NEW_SECRET = wire.secret_text(b"the agency's next signing key, 32")
PAGE = Path(__file__).parents[2] / "docs" / "upstreams" / "agencynotice.md"


def connect(*agencies: tuple[str, str, list[str]], **values: Any) -> AgencyNoticeSource:
    """The adapter for agencies given as (code, sandbox URL, signing secrets)."""
    links = {
        code: {"base_url": url, "api_key": API_KEY, "signing_secrets": secrets}
        for code, url, secrets in agencies
    }
    settings = adapter.read_settings(agencies=json.dumps(links), timeout_seconds=BUDGET, **values)
    assert isinstance(settings, AgencyNoticeSettings)
    return AgencyNoticeSource(settings)


@dataclass
class Hub:
    """The hub's side of a submission, as the notices route does it: verify the raw body,
    answer 200 with what was taken or the refusal's status and code."""

    source: AgencyNoticeSource
    url: str = ""
    taken: list[tuple[str, list[AgencyNotice]]] = field(default_factory=list)  # (request id, …)
    refused: list[RejectReason] = field(default_factory=list)
    failures: int = 0  # answer 503 to this many requests first
    arrived: asyncio.Event = field(default_factory=asyncio.Event)  # a request came

    def app(self) -> Starlette:
        async def receive(request: Request) -> Response:
            self.arrived.set()
            if self.failures > 0:
                self.failures -= 1
                return Response(status_code=503)
            try:
                notices = self.source.verify(await request.body(), request.headers)
            except NoticeRejected as exc:
                self.refused.append(exc.code)
                return JSONResponse({"code": exc.code.value}, exc.http_status)
            self.taken.append((request.headers[wire.REQUEST_ID], notices))
            return JSONResponse({"taken": len(notices)})

        return Starlette(routes=[Route("/notices", receive, methods=["POST"])])

    def notices(self) -> list[AgencyNotice]:
        return [notice for _, batch in self.taken for notice in batch]


@pytest.fixture
async def agency() -> AsyncIterator[RunningSandbox]:
    async with running(SANDBOX) as sandbox:
        yield sandbox
        await control(sandbox, "DELETE", "/_sandbox/config")  # stop what is still sending


@pytest.fixture
async def source(agency: RunningSandbox) -> AsyncIterator[AgencyNoticeSource]:
    connected = connect((AGENCY, agency.url, [SIGNING_SECRET]))
    yield connected
    await connected.aclose()


@pytest.fixture
async def hub(agency: RunningSandbox, source: AgencyNoticeSource) -> AsyncIterator[Hub]:
    receiver = Hub(source)
    async with running(Sandbox("hub", "notices route", receiver.app, lambda url: {})) as server:
        receiver.url = server.url + "/notices"
        await configure(agency, hubUrl=receiver.url, retrySeconds=0.05)
        yield receiver


async def control(sandbox: RunningSandbox, method: str, path: str, body: Any = None) -> Any:
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        response = await http.request(method, path, json=body)
    response.raise_for_status()
    return response.json()


async def configure(sandbox: RunningSandbox, **changes: Any) -> dict[str, Any]:
    return dict(await control(sandbox, "POST", "/_sandbox/config", changes))


async def issue(sandbox: RunningSandbox, *notices: dict[str, Any]) -> list[dict[str, Any]]:
    """Have the agency issue notices; its submissions (request ids and notice ids)."""
    made = await control(sandbox, "POST", "/_sandbox/notices", {"notices": list(notices)})
    return list(made["submissions"])


async def settled(sandbox: RunningSandbox) -> list[dict[str, Any]]:
    """The agency's submission log once nothing is still being sent."""
    async with asyncio.timeout(10):
        while True:
            log = list(await control(sandbox, "GET", "/_sandbox/submissions"))
            if all(entry["state"] not in ("queued", "sending") for entry in log):
                return log
            await asyncio.sleep(0.02)


async def test_an_issued_notice_arrives_signed_and_is_verified_into_its_typed_notice(
    agency: RunningSandbox, hub: Hub
) -> None:
    (made,) = await issue(
        agency,
        {
            "noticeId": "TAX-2026-000001",
            "type": "tax_due",
            "citizen": CITIZEN,
            "urgency": "urgent",
            "fields": {"item": {"ko": "자동차세", "en": "Automobile tax"}, "period": "2026-1"},
            "payment": {"amount": 35_000, "epayNo": "1234567890123456789", "dueDate": "2026-06-30"},
            "issuedAt": "2026-06-01T09:00:00+09:00",
            "expiresAt": "2026-07-01T00:00:00+09:00",
        },
    )
    (log,) = await settled(agency)

    assert log["state"] == "delivered" and log["answers"] == [200]
    ((request_id, (notice,)),) = hub.taken
    assert request_id == made["requestId"] and made["noticeIds"] == ["TAX-2026-000001"]
    assert notice == AgencyNotice(
        agency=AGENCY,
        notice_id="TAX-2026-000001",
        notice_type="tax_due",
        citizen=CITIZEN,
        urgency=NoticeUrgency.URGENT,
        fields_ko={"item": "자동차세", "period": "2026-1"},
        fields_en={"item": "Automobile tax", "period": "2026-1"},
        issued_at=datetime(2026, 6, 1, 0, 0, tzinfo=UTC),
        expires_at=datetime(2026, 6, 30, 15, 0, tzinfo=UTC),
        payment=NoticePayment(35_000, "1234567890123456789", date(2026, 6, 30)),
    )
    assert notice.issued_at.tzinfo is UTC


async def test_notices_go_in_batches_in_the_order_issued(agency: RunningSandbox, hub: Hub) -> None:
    await configure(agency, batchSize=3)
    made = await issue(agency, *({"noticeId": f"B-{n}"} for n in range(5)))
    await issue(agency, {"noticeId": "B-5"})  # a later call queues behind the first
    await settled(agency)

    assert [s["noticeIds"] for s in made] == [["B-0", "B-1", "B-2"], ["B-3", "B-4"]]
    assert [len(batch) for _, batch in hub.taken] == [3, 2, 1]
    assert [n.notice_id for n in hub.notices()] == [f"B-{n}" for n in range(6)]
    assert {n.citizen for n in hub.notices()} == {SANDBOX_CITIZEN}
    assert all(n.payment is None and n.urgency is NoticeUrgency.NORMAL for n in hub.notices())


async def test_a_submission_is_sent_again_under_its_id_and_signed_afresh_until_taken(
    agency: RunningSandbox, hub: Hub
) -> None:
    hub.failures = 2
    (made,) = await issue(agency, {"noticeId": "RETRY-1"})
    (log,) = await settled(agency)

    assert log["state"] == "delivered" and log["answers"] == [503, 503, 200]
    assert [request_id for request_id, _ in hub.taken] == [made["requestId"]]
    assert hub.refused == []  # each retry has its own timestamp: never taken for a replay


async def test_a_hub_that_stays_down_leaves_the_submission_failed_after_its_attempts(
    agency: RunningSandbox, hub: Hub
) -> None:
    hub.failures = 100
    await configure(agency, attempts=3, retrySeconds=0.01)
    await issue(agency, {"noticeId": "DOWN-1"})
    (log,) = await settled(agency)
    assert log["state"] == "failed" and log["answers"] == [503, 503, 503]


async def test_pointing_the_agency_elsewhere_stops_what_it_was_sending(
    agency: RunningSandbox, hub: Hub
) -> None:
    hub.failures = 1_000
    await issue(agency, {"noticeId": "STOP-1"}, {"noticeId": "STOP-2"})
    await asyncio.wait_for(hub.arrived.wait(), 5)
    await configure(agency, hubUrl=hub.url)  # set again: what was under way stops
    assert [s["state"] for s in await settled(agency)] == ["cancelled", "cancelled"]

    hub.failures = 0
    await issue(agency, {"noticeId": "AFTER"})
    assert (await settled(agency))[-1]["state"] == "delivered"
    assert [n.notice_id for n in hub.notices()] == ["AFTER"]


async def test_a_duplicate_submission_repeats_the_notices_under_a_new_request_id(
    agency: RunningSandbox, hub: Hub
) -> None:
    await configure(agency, duplicate=True)
    await issue(agency, {"noticeId": "DUP-1"}, {"noticeId": "DUP-2"})
    log = await settled(agency)

    assert [(s["kind"], s["noticeIds"], s["state"]) for s in log] == [
        ("original", ["DUP-1"], "delivered"),
        ("original", ["DUP-2"], "delivered"),
        ("duplicate", ["DUP-1"], "delivered"),
        ("duplicate", ["DUP-2"], "delivered"),
    ]
    assert [n.notice_id for n in hub.notices()] == ["DUP-1", "DUP-1", "DUP-2", "DUP-2"]
    assert len({request_id for request_id, _ in hub.taken}) == 4  # the notice id is the key


async def test_a_replayed_request_is_refused_as_a_replay(agency: RunningSandbox, hub: Hub) -> None:
    await configure(agency, replay=True)
    await issue(agency, {"noticeId": "REPLAY-1"})
    original, replay = await settled(agency)

    assert (original["state"], original["answers"]) == ("delivered", [200])
    assert (replay["kind"], replay["requestId"]) == ("replay", original["requestId"])
    assert (replay["state"], replay["answers"]) == ("rejected", [409])
    assert hub.refused == [RejectReason.REPLAY]
    assert [n.notice_id for n in hub.notices()] == ["REPLAY-1"]


async def test_reordered_submissions_arrive_last_issued_first(
    agency: RunningSandbox, hub: Hub
) -> None:
    await configure(agency, reorder=True)
    await issue(agency, *({"noticeId": f"R-{n}", "citizen": CITIZEN} for n in range(3)))
    await settled(agency)
    assert [n.notice_id for n in hub.notices()] == ["R-2", "R-1", "R-0"]


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ({"badSignature": True}, RejectReason.BAD_SIGNATURE),
        ({"staleSeconds": 600}, RejectReason.STALE),
    ],
)
async def test_a_forged_or_stale_submission_is_refused_once_and_not_sent_again(
    agency: RunningSandbox, hub: Hub, fault: dict[str, Any], reason: RejectReason
) -> None:
    await configure(agency, **fault)
    await issue(agency, {"noticeId": "BAD-1"})
    (log,) = await settled(agency)
    assert (log["state"], log["answers"]) == ("rejected", [401])
    assert hub.refused == [reason] and hub.taken == []


async def test_a_notice_the_format_forbids_is_refused_whole_as_malformed(
    agency: RunningSandbox, hub: Hub
) -> None:
    await configure(agency, batchSize=2)
    raw_ci = "A" * 86 + "=="  # a CI: 88 characters of base64
    await issue(agency, {"noticeId": "OK-1"}, {"noticeId": "RAW-CI", "citizen": raw_ci})
    (log,) = await settled(agency)
    assert (log["state"], log["answers"]) == ("rejected", [400])
    assert hub.refused == [RejectReason.MALFORMED] and hub.taken == []


async def test_a_rotated_key_is_taken_while_the_hub_holds_both(agency: RunningSandbox) -> None:
    both = connect((AGENCY, agency.url, [SIGNING_SECRET, NEW_SECRET]))
    new_only = connect((AGENCY, agency.url, [NEW_SECRET]))
    old_only = connect((AGENCY, agency.url, [SIGNING_SECRET]))
    body = submission_body({"noticeId": "ROT-1"})
    try:
        signed_new = signed(body, [NEW_SECRET])
        assert [n.notice_id for n in both.verify(body, signed_new)] == ["ROT-1"]
        with pytest.raises(NoticeRejected) as refused:
            old_only.verify(body, signed_new)
        assert refused.value.code is RejectReason.BAD_SIGNATURE
        signed_both = signed(body, [SIGNING_SECRET, NEW_SECRET])  # the agency mid-rotation
        assert len(old_only.verify(body, signed_both)) == len(new_only.verify(body, signed_both))
    finally:
        for connected in (both, new_only, old_only):
            await connected.aclose()


async def test_the_sandbox_signs_with_every_secret_it_is_given(
    agency: RunningSandbox, hub: Hub
) -> None:
    await configure(agency, signingSecrets=[SIGNING_SECRET, NEW_SECRET])
    await issue(agency, {"noticeId": "TWO-KEYS"})
    (log,) = await settled(agency)
    assert log["state"] == "delivered"
    await configure(agency, signingSecrets=[NEW_SECRET])
    await issue(agency, {"noticeId": "NEW-KEY-ONLY"})
    assert (await settled(agency))[-1]["answers"] == [401]
    assert hub.refused == [RejectReason.BAD_SIGNATURE]


def submission_body(*notices: dict[str, Any], agency: str = AGENCY) -> bytes:
    base = {
        "type": "fine_issued",
        "citizen": CITIZEN,
        "urgency": "normal",
        "fields": {},
        "issuedAt": wire.timestamp(datetime.now(UTC)),
    }
    return wire.encoded({"agency": agency, "notices": [base | notice for notice in notices]})


def signed(
    body: bytes,
    secrets: list[str],
    *,
    at: float | None = None,
    request_id: str = "req_test",
    agency: str = AGENCY,
) -> dict[str, str]:
    stamp = str(int(time.time() if at is None else at))
    keys = [wire.secret_key(secret) for secret in secrets]
    return {
        wire.AGENCY: agency,
        wire.REQUEST_ID: request_id,
        wire.TIMESTAMP: stamp,
        wire.SIGNATURE: wire.signatures(keys, request_id, stamp, body),
    }


def refusal(source: AgencyNoticeSource, body: bytes, headers: dict[str, str]) -> NoticeRejected:
    with pytest.raises(NoticeRejected) as refused:
        source.verify(body, headers)
    return refused.value


def test_the_signature_is_the_standard_webhooks_one() -> None:
    """The published Standard Webhooks test vector (standard-webhooks, svix libraries)."""
    key = wire.secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    found = wire.signature(
        key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", b'{"test": 2432232314}'
    )
    assert found == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


async def test_each_refusal_names_its_reason(source: AgencyNoticeSource) -> None:
    body = submission_body({"noticeId": "V-1"})
    good = signed(body, [SIGNING_SECRET])
    assert [n.notice_id for n in source.verify(body, good)] == ["V-1"]

    missing = refusal(source, body, {k: v for k, v in good.items() if k != wire.SIGNATURE})
    assert (missing.code, missing.http_status) == (RejectReason.MISSING_HEADER, 401)
    assert wire.SIGNATURE in missing.detail
    unknown = refusal(source, body, good | {wire.AGENCY: POLICE})
    assert unknown.code is RejectReason.UNKNOWN_AGENCY
    altered = body.replace(b"V-1", b"V-2")
    assert refusal(source, altered, good).code is RejectReason.BAD_SIGNATURE
    forged = signed(body, [NEW_SECRET], request_id="req_forged")
    assert refusal(source, body, forged).code is RejectReason.BAD_SIGNATURE
    old = signed(body, [SIGNING_SECRET], at=time.time() - 301, request_id="req_old")
    stale = refusal(source, body, old)
    assert (stale.code, stale.http_status) == (RejectReason.STALE, 401)
    ahead = signed(body, [SIGNING_SECRET], at=time.time() + 400, request_id="req_ahead")
    assert refusal(source, body, ahead).code is RejectReason.STALE
    replay = refusal(source, body, good)  # the first request, received again verbatim
    assert (replay.code, replay.http_status) == (RejectReason.REPLAY, 409)
    retried = signed(body, [SIGNING_SECRET], at=time.time() + 1)  # same id, signed afresh
    assert [n.notice_id for n in source.verify(body, retried)] == ["V-1"]


@pytest.mark.parametrize(
    ("notice", "says"),
    [
        ({"noticeId": "has space"}, "noticeId"),
        ({"citizen": "9001011234567"}, "never a CI or resident number"),
        ({"urgency": "soon"}, "urgency"),
        ({"type": "Tax Due"}, "type"),
        ({"fields": {"item": 3}}, "fields.item"),
        ({"fields": {"item": {"ko": "자동차세"}}}, "fields.item"),
        ({"issuedAt": "2026-06-01T09:00:00"}, "offset"),
        ({"expiresAt": "2020-01-01T00:00:00+09:00"}, "expiresAt is not after issuedAt"),
        ({"payment": {"amount": 35_000.0, "epayNo": "1" * 19, "dueDate": "2026-06-30"}}, "won"),
        ({"payment": {"amount": 35_000, "epayNo": "123", "dueDate": "2026-06-30"}}, "epayNo"),
        ({"payment": {"amount": 1, "epayNo": "1" * 19, "dueDate": "30/06/2026"}}, "dueDate"),
        ({"color": "red"}, "unknown color"),
    ],
)
async def test_a_malformed_notice_is_refused_saying_what_and_where(
    source: AgencyNoticeSource, notice: dict[str, Any], says: str
) -> None:
    body = submission_body({"noticeId": "M-0"}, {"noticeId": "M-1"} | notice)
    refused = refusal(source, body, signed(body, [SIGNING_SECRET]))
    assert (refused.code, refused.http_status) == (RejectReason.MALFORMED, 400)
    assert "notices[1]" in refused.detail and says in refused.detail


async def test_a_malformed_submission_is_refused(source: AgencyNoticeSource) -> None:
    cases = {
        b"not json": "not JSON",
        submission_body({"noticeId": "X"}, agency=POLICE): "is not ieum-agency 6110000",
        submission_body({"noticeId": "X"}, {"noticeId": "X"}): "appears twice",
        submission_body(*({"noticeId": f"X-{n}"} for n in range(101))): "1 to 100",
        wire.encoded({"agency": AGENCY, "notices": [], "extra": 1}): "nothing else",
    }
    for number, (body, says) in enumerate(cases.items()):
        refused = refusal(source, body, signed(body, [SIGNING_SECRET], request_id=f"r{number}"))
        assert refused.code is RejectReason.MALFORMED and says in refused.detail


def report(notice_id: str, status: ReportStatus, reason: str = "") -> NoticeReport:
    return NoticeReport(AGENCY, notice_id, status, datetime.now(UTC), reason)


async def test_receipts_are_recorded_once_per_notice_and_status(
    agency: RunningSandbox, hub: Hub, source: AgencyNoticeSource
) -> None:
    await issue(agency, {"noticeId": "RC-1"}, {"noticeId": "RC-2"})
    await settled(agency)
    first = [
        report("RC-1", ReportStatus.DELIVERED),
        report("RC-1", ReportStatus.READ),
        report("RC-2", ReportStatus.FAILED, "no app of the citizen takes fine_issued"),
        report("RC-1", ReportStatus.DELIVERED),  # twice in one call: sent once
    ]
    await source.report(first)
    await source.report(first)  # resent whole after an unknown outcome
    await source.report([report("RC-1", ReportStatus.READ)])  # later, another time

    receipts = await control(agency, "GET", "/_sandbox/reports")
    assert [(r["noticeId"], r["status"], r["reason"], r["repeats"]) for r in receipts] == [
        ("RC-1", "delivered", "", 0),
        ("RC-1", "read", "", 1),  # the resent call was answered from its key
        ("RC-2", "failed", "no app of the citizen takes fine_issued", 0),
    ]
    assert wire.instant(receipts[0]["at"]) == first[0].at.replace(microsecond=0)


async def test_a_report_whose_answer_is_lost_is_resent_and_recorded_once(
    agency: RunningSandbox, hub: Hub, source: AgencyNoticeSource
) -> None:
    await issue(agency, {"noticeId": "LOST-1"})
    await settled(agency)
    await agency.inject(error="5xx_after", path=wire.REPORTS_PATH, count=1)
    await source.report([report("LOST-1", ReportStatus.DELIVERED)])  # retried with its key
    (receipt,) = await control(agency, "GET", "/_sandbox/reports")
    assert (receipt["noticeId"], receipt["repeats"]) == ("LOST-1", 0)  # the key's answer replayed

    await agency.inject(error="hang", path=wire.REPORTS_PATH)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        await source.report([report("LOST-1", ReportStatus.READ)])
    # cut off by the budget, not by the hang (which lasts far longer); generous on a loaded CI
    assert time.monotonic() - started < BUDGET + 5


async def test_a_wrong_report_is_refused_before_or_by_the_agency(
    agency: RunningSandbox, source: AgencyNoticeSource
) -> None:
    with pytest.raises(ValueError, match="gives no reason"):
        await source.report([report("X", ReportStatus.FAILED)])
    with pytest.raises(ValueError, match="no agency 1320000"):
        await source.report([NoticeReport(POLICE, "X", ReportStatus.READ, datetime.now(UTC))])
    with pytest.raises(UpstreamRejected, match="UNKNOWN_NOTICE"):
        await source.report([report("NEVER-ISSUED", ReportStatus.DELIVERED)])
    assert await control(agency, "GET", "/_sandbox/reports") == []


async def test_the_agency_api_wants_its_key_and_holds_an_idempotency_key_to_its_body(
    agency: RunningSandbox, hub: Hub
) -> None:
    await issue(agency, {"noticeId": "K-1"})
    await settled(agency)
    key = {"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": "k-1"}

    def reports(*notice_ids: str) -> dict[str, Any]:
        at = "2026-01-01T09:00:00+09:00"
        return {"reports": [{"noticeId": n, "status": "read", "at": at} for n in notice_ids]}

    async with httpx.AsyncClient(base_url=agency.url) as http:
        bare = await http.get(wire.AGENCY_PATH)
        wrong = await http.get(wire.AGENCY_PATH, headers={"Authorization": "Bearer nope"})
        right = await http.get(wire.AGENCY_PATH, headers={"Authorization": f"Bearer {API_KEY}"})
        first = await http.post(wire.REPORTS_PATH, json=reports("K-1"), headers=key)
        again = await http.post(wire.REPORTS_PATH, json=reports("K-1"), headers=key)
        other = await http.post(wire.REPORTS_PATH, json=reports("K-1", "K-1"), headers=key)
        unknown = await http.post(
            wire.REPORTS_PATH,
            json=reports("NOT-ISSUED"),
            headers={"Authorization": key["Authorization"]},
        )
    assert (bare.status_code, bare.json()["code"]) == (401, "UNAUTHORIZED")
    assert wrong.status_code == 401
    assert right.json() == {"agency": AGENCY, "name": "서울특별시 (sandbox)"}
    assert first.json() == again.json() == {"recorded": 1, "repeated": 0}
    assert (other.status_code, other.json()["code"]) == (422, "IDEMPOTENCY_KEY_REUSED")
    assert (unknown.status_code, unknown.json()["code"]) == (422, "UNKNOWN_NOTICE")


async def test_health_fails_for_a_wrong_key_or_another_agencys_key(
    agency: RunningSandbox,
) -> None:
    links = {
        AGENCY: {"base_url": agency.url, "api_key": "nope", "signing_secrets": [SIGNING_SECRET]}
    }
    wrong_key = AgencyNoticeSource(
        AgencyNoticeSettings(agencies=json.dumps(links), timeout_seconds=BUDGET)
    )
    misfiled = connect((POLICE, agency.url, [SIGNING_SECRET]))  # the Seoul sandbox's key
    right = connect((AGENCY, agency.url, [SIGNING_SECRET]))
    try:
        await right.health()
        with pytest.raises(UpstreamRejected, match="UNAUTHORIZED"):
            await wrong_key.health()
        with pytest.raises(UpstreamRejected, match="set for agency 1320000 belongs to 6110000"):
            await misfiled.health()
    finally:
        for connected in (wrong_key, misfiled, right):
            await connected.aclose()


async def test_two_agencies_each_verified_with_their_key_and_told_their_receipts() -> None:
    police_key = wire.secret_text(b"police signing key for the hub..")
    police_sandbox = Sandbox(
        "police", "경찰청", lambda: create_app(POLICE, "경찰청 (sandbox)"), settings_for
    )
    async with running(SANDBOX) as seoul, running(police_sandbox) as police:
        source = connect((AGENCY, seoul.url, [SIGNING_SECRET]), (POLICE, police.url, [police_key]))
        hub = Hub(source)
        receiver = Sandbox("hub", "notices route", hub.app, lambda url: {})
        try:
            async with running(receiver) as server:
                await source.health()
                await configure(seoul, hubUrl=server.url + "/notices")
                await configure(police, hubUrl=server.url + "/notices", signingSecrets=[police_key])
                await issue(seoul, {"noticeId": "S-1"})
                await issue(police, {"noticeId": "P-1", "type": "fine_issued"})
                await settled(seoul)
                await settled(police)
                assert sorted((n.agency, n.notice_id) for n in hub.notices()) == [
                    (POLICE, "P-1"),
                    (AGENCY, "S-1"),
                ]
                body = submission_body({"noticeId": "P-2"}, agency=POLICE)
                as_police = signed(body, [SIGNING_SECRET], agency=POLICE)  # Seoul's key
                assert refusal(source, body, as_police).code is RejectReason.BAD_SIGNATURE

                at = datetime.now(UTC)
                await source.report(
                    [
                        NoticeReport(AGENCY, "S-1", ReportStatus.READ, at),
                        NoticeReport(POLICE, "P-1", ReportStatus.DELIVERED, at),
                    ]
                )
                told = [await control(s, "GET", "/_sandbox/reports") for s in (seoul, police)]
                assert [[(r["noticeId"], r["status"]) for r in t] for t in told] == [
                    [("S-1", "read")],
                    [("P-1", "delivered")],
                ]
        finally:
            for sandbox in (seoul, police):
                await control(sandbox, "DELETE", "/_sandbox/config")
            await source.aclose()


def test_settings_refuse_keys_and_codes_outside_the_format() -> None:
    def link(secret: str) -> dict[str, Any]:
        return {"base_url": "http://agency", "api_key": "k", "signing_secrets": [secret]}

    with pytest.raises(ValidationError, match="starts with whsec_"):
        AgencyNoticeSettings(agencies={AGENCY: link("plain-secret")})
    with pytest.raises(ValidationError, match="24 to 64 bytes"):
        AgencyNoticeSettings(agencies={AGENCY: link(wire.secret_text(b"short"))})
    with pytest.raises(ValidationError, match="not 7 digits or capitals"):
        AgencyNoticeSettings(agencies={"seoul": link(SIGNING_SECRET)})
    with pytest.raises(ValidationError, match="signing_secrets"):
        AgencyNoticeSettings(agencies={AGENCY: link(SIGNING_SECRET) | {"signing_secrets": []}})


def test_the_wire_format_page_matches_the_sandbox() -> None:
    page = PAGE.read_text()
    for name in Config.model_fields:
        assert f"| `{name}` |" in page, f"/_sandbox/config field {name} is not documented"
    for code in RejectReason:
        assert f"`{code.value}`" in page, f"refusal {code.value} is not documented"
    assert SIGNING_SECRET in page and API_KEY in page and AGENCY in page
    for variable in ("AGENCIES", "TOLERANCE_SECONDS", "REPLAY_MEMORY", "TIMEOUT_SECONDS"):
        assert f"IEUM_AGENCYNOTICE_{variable}" in page
    vector = re.search(r"`(v1,g0hM9SsE[^`]+)`", page)
    assert vector is not None and vector.group(1).endswith("=")
    assert wire.REQUEST_ID in page and wire.TIMESTAMP in page and wire.AGENCY in page
    assert SANDBOX_CITIZEN in page


def test_the_pages_example_submission_is_signed_and_well_formed() -> None:
    block = PAGE.read_text().split("## Submissions: agency → hub", 1)[1].split("```")[1]
    head, body = block.strip("\n").split("\n\n")
    headers = dict(line.split(": ", 1) for line in head.splitlines()[1:])
    raw = body.encode()
    key = wire.secret_key(SIGNING_SECRET)
    expected = wire.signature(key, headers[wire.REQUEST_ID], headers[wire.TIMESTAMP], raw)
    assert headers[wire.SIGNATURE] == expected
    (notice,) = parse.submission(raw, headers[wire.AGENCY])
    assert notice.citizen == SANDBOX_CITIZEN and notice.payment is not None
