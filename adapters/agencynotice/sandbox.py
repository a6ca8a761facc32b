"""A sandbox agency system (docs/upstreams/agencynotice.md): it issues notices to the hub
as signed submissions when told to through its control API, and takes the hub's delivery
and read receipts on its /v1 API, recording each notice's status once.

    /v1/agency, /v1/reports          the agency's API, for the hub (Bearer API key)
    /_sandbox/config                 where and how submissions go, faults
    /_sandbox/notices                issue notices (POST) — they are sent at once
    /_sandbox/submissions            what was sent and how the hub answered
    /_sandbox/reports                the receipts recorded
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapters.agencynotice import wire
from adapters.agencynotice.sender import Behaviour, Sender, Submission, request_id
from adapters.kinds import ReportStatus
from adapters.sandbox.server import Sandbox

# The sandbox's own credentials and codes, published so anyone may call it.
AGENCY = "6110000"  # 서울특별시's 행정기관코드
NAME = "서울특별시 (sandbox)"
API_KEY = "sandbox-agencynotice-api-key"
SIGNING_SECRET = wire.secret_text(b"ieum-agencynotice-sandbox-key-01")
LINKING_KEY = b"ieum-sandbox-linking-key"  # the sandbox's key for citizen pseudonyms
SANDBOX_CITIZEN = wire.citizen_ref("SANDBOX-CI-0001", LINKING_KEY)
KEEP_KEYS = 100_000  # Idempotency-Keys remembered


class Config(BaseModel):
    """Set through POST /_sandbox/config (fields merge); read when notices are issued."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hubUrl: str | None = None
    signingSecrets: list[str] = Field(default=[SIGNING_SECRET], min_length=1, max_length=2)
    batchSize: int = Field(default=1, ge=1, le=wire.MAX_NOTICES)
    attempts: int = Field(default=20, ge=1, le=1000)
    retrySeconds: float = Field(default=0.2, gt=0, le=3600)
    retryMaxSeconds: float = Field(default=5.0, gt=0, le=86_400)
    duplicate: bool = False
    replay: bool = False
    reorder: bool = False
    badSignature: bool = False
    staleSeconds: float = Field(default=0.0, ge=0)

    def behaviour(self) -> Behaviour | None:
        if self.hubUrl is None:
            return None
        return Behaviour(
            url=self.hubUrl,
            keys=tuple(wire.secret_key(secret) for secret in self.signingSecrets),
            attempts=self.attempts,
            retry_seconds=self.retrySeconds,
            retry_max_seconds=self.retryMaxSeconds,
            duplicate=self.duplicate,
            replay=self.replay,
            bad_signature=self.badSignature,
            stale_seconds=self.staleSeconds,
        )


class NewNotice(BaseModel):
    """A notice to issue; left-out fields get the sandbox's values. Values are sent as
    given, unchecked, so a test can send what the format forbids."""

    model_config = ConfigDict(extra="forbid")

    noticeId: str | None = None
    type: str = "tax_due"
    citizen: str = SANDBOX_CITIZEN
    urgency: str = "normal"
    fields: dict[str, Any] = {}
    payment: dict[str, Any] | None = None
    issuedAt: str | None = None
    expiresAt: str | None = None


class NewNotices(BaseModel):
    model_config = ConfigDict(extra="forbid")

    notices: list[NewNotice] = Field(min_length=1, max_length=100_000)


@dataclass
class Receipt:
    notice_id: str
    status: str
    at: str
    reason: str
    received_at: str
    repeats: int = 0

    def report(self) -> dict[str, Any]:
        return {
            "noticeId": self.notice_id,
            "status": self.status,
            "at": self.at,
            "reason": self.reason,
            "receivedAt": self.received_at,
            "repeats": self.repeats,
        }


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def answer(self) -> JSONResponse:
        return JSONResponse({"code": self.code, "message": self.message}, self.status)


class Agency:
    """One sandbox's state: what it issued, sent and was told."""

    def __init__(self, code: str, name: str) -> None:
        self.code, self.name = code, name
        self.config = Config()
        self.sender = Sender(code)
        self.issued: set[str] = set()
        self.receipts: dict[tuple[str, str], Receipt] = {}
        self.keys: dict[str, tuple[str, dict[str, int]]] = {}  # key -> (body hash, answer)
        self._next = 0

    def issue(self, wanted: list[NewNotice]) -> list[Submission]:
        behaviour = self.config.behaviour()
        if behaviour is None:
            raise Refused(409, "NO_HUB", "set hubUrl through /_sandbox/config first")
        items = [self._item(notice) for notice in wanted]
        size = self.config.batchSize
        submissions = [
            Submission(
                request_id(),
                [item["noticeId"] for item in batch],
                wire.encoded({"agency": self.code, "notices": batch}),
                behaviour,
            )
            for batch in (items[start : start + size] for start in range(0, len(items), size))
        ]
        if self.config.reorder:
            submissions.reverse()
        self.sender.submit(submissions)
        return submissions

    def record(self, body: dict[str, Any]) -> dict[str, int]:
        reports = body.get("reports")
        if not isinstance(reports, list) or not 1 <= len(reports) <= wire.MAX_REPORTS:
            raise Refused(400, "INVALID_REQUEST", f"reports is a list of 1 to {wire.MAX_REPORTS}")
        checked = [_receipt(item) for item in reports]
        unknown = sorted({found.notice_id for found in checked} - self.issued)
        if unknown:
            raise Refused(
                422, "UNKNOWN_NOTICE", f"this agency issued no notice {', '.join(unknown[:10])}"
            )
        recorded = 0
        for found in checked:
            held = self.receipts.get((found.notice_id, found.status))
            if held is None:
                self.receipts[(found.notice_id, found.status)] = found
                recorded += 1
            else:
                held.repeats += 1
        return {"recorded": recorded, "repeated": len(checked) - recorded}

    def _item(self, notice: NewNotice) -> dict[str, Any]:
        self._next += 1
        notice_id = notice.noticeId or f"{self.code}-{self._next:08d}"
        self.issued.add(notice_id)
        return {
            "noticeId": notice_id,
            "type": notice.type,
            "citizen": notice.citizen,
            "urgency": notice.urgency,
            "fields": notice.fields,
            "payment": notice.payment,
            "issuedAt": notice.issuedAt or wire.timestamp(datetime.now(UTC)),
            "expiresAt": notice.expiresAt,
        }


def _receipt(item: object) -> Receipt:
    if not isinstance(item, dict):
        raise Refused(400, "INVALID_REQUEST", "a report is an object")
    notice_id, status, at = item.get("noticeId"), item.get("status"), item.get("at")
    reason = item.get("reason", "")
    if not isinstance(notice_id, str) or status not in set(ReportStatus):
        raise Refused(400, "INVALID_REQUEST", "a report has a noticeId and a known status")
    if not isinstance(reason, str) or (status == ReportStatus.FAILED and not reason):
        raise Refused(400, "INVALID_REQUEST", f"the failed report of {notice_id} needs a reason")
    try:
        wire.instant(str(at))
    except ValueError:
        raise Refused(400, "INVALID_REQUEST", f"at {at!r} is not a time with an offset") from None
    received = wire.timestamp(datetime.now(UTC))
    return Receipt(notice_id, str(status), str(at), reason, received)


Endpoint = Callable[[Request], Awaitable[Response]]


def _authorized(handler: Callable[[Request, bytes], dict[str, Any]]) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), API_KEY.encode()):
            return Refused(401, "UNAUTHORIZED", "Authorization: Bearer <API key>").answer()
        try:
            return JSONResponse(handler(request, await request.body()))
        except Refused as exc:
            return exc.answer()

    return endpoint


def create_app(code: str = AGENCY, name: str = NAME) -> Starlette:
    agency = Agency(code, name)

    def identity(request: Request, raw: bytes) -> dict[str, Any]:
        return {"agency": agency.code, "name": agency.name}

    def reports(request: Request, raw: bytes) -> dict[str, Any]:
        fingerprint = hashlib.sha256(raw).hexdigest()
        key = request.headers.get("idempotency-key")
        if key is not None and key in agency.keys:
            stored, answer = agency.keys[key]
            if stored != fingerprint:
                raise Refused(
                    422, "IDEMPOTENCY_KEY_REUSED", "this Idempotency-Key came with another body"
                )
            return answer
        try:
            body = json.loads(raw)
        except ValueError:
            raise Refused(400, "INVALID_REQUEST", "the body is not JSON") from None
        answer = agency.record(body if isinstance(body, dict) else {})
        if key is not None and len(agency.keys) < KEEP_KEYS:
            agency.keys[key] = (fingerprint, answer)
        return answer

    async def config(request: Request) -> Response:
        if request.method == "DELETE":
            agency.sender.cancel()
            agency.config = Config()
        elif request.method == "POST":
            try:
                changes = json.loads(await request.body())
                agency.config = Config.model_validate({**agency.config.model_dump(), **changes})
                agency.config.behaviour()  # the secrets decode
            except (ValueError, TypeError, ValidationError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            if "hubUrl" in changes:
                agency.sender.cancel()  # submissions to the old hub stop
        return JSONResponse(agency.config.model_dump())

    async def notices(request: Request) -> Response:
        try:
            wanted = NewNotices.model_validate_json(await request.body())
            made = agency.issue(wanted.notices)
        except ValidationError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except Refused as exc:
            return exc.answer()
        return JSONResponse(
            {"submissions": [{"requestId": s.request_id, "noticeIds": s.notice_ids} for s in made]}
        )

    async def submissions(request: Request) -> Response:
        return JSONResponse([submission.report() for submission in agency.sender.log])

    async def receipts(request: Request) -> Response:
        return JSONResponse([receipt.report() for receipt in agency.receipts.values()])

    return Starlette(
        routes=[
            Route(wire.AGENCY_PATH, _authorized(identity), methods=["GET"]),
            Route(wire.REPORTS_PATH, _authorized(reports), methods=["POST"]),
            Route("/_sandbox/config", config, methods=["GET", "POST", "DELETE"]),
            Route("/_sandbox/notices", notices, methods=["POST"]),
            Route("/_sandbox/submissions", submissions, methods=["GET"]),
            Route("/_sandbox/reports", receipts, methods=["GET"]),
        ]
    )


def settings_for(url: str, code: str = AGENCY) -> dict[str, str]:
    """The adapter's settings for a sandbox agency at `url`."""
    link = {"base_url": url, "api_key": API_KEY, "signing_secrets": [SIGNING_SECRET]}
    return {"agencies": json.dumps({code: link})}


SANDBOX = Sandbox(
    name="agencynotice",
    summary="an agency system: signed notice submissions to the hub, receipts back",
    app=create_app,
    configure=settings_for,
)
