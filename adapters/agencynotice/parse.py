"""What arrives into typed values: a submission's notices (all of them or NoticeRejected),
the agency's answers to the hub's calls, and its refusals."""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from typing import Any

import httpx

from adapters.agencynotice import wire
from adapters.errors import UpstreamRejected
from adapters.kinds import (
    AgencyNotice,
    NoticePayment,
    NoticeRejected,
    NoticeUrgency,
    RejectReason,
)

MAX_FIELDS = 30
MAX_TEXT = 500  # characters of one field's value


class _Malformed(ValueError):
    pass


def submission(body: bytes, agency: str) -> list[AgencyNotice]:
    """The notices of a verified submission from `agency`, or NoticeRejected (MALFORMED)
    saying what is wrong with which notice. A submission is taken whole or not at all."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise _rejected("the body is not JSON") from None
    if not isinstance(document, dict) or set(document) != {"agency", "notices"}:
        raise _rejected('the body is {"agency": …, "notices": […]} and nothing else')
    if document["agency"] != agency:
        raise _rejected(f"the body's agency {document['agency']!r} is not {wire.AGENCY} {agency}")
    items = document["notices"]
    if not isinstance(items, list) or not 1 <= len(items) <= wire.MAX_NOTICES:
        raise _rejected(f"notices is a list of 1 to {wire.MAX_NOTICES}")
    notices: list[AgencyNotice] = []
    seen: set[str] = set()
    for number, item in enumerate(items):
        try:
            notice = _notice(agency, item)
        except _Malformed as exc:
            raise _rejected(f"notices[{number}]: {exc}") from None
        if notice.notice_id in seen:
            raise _rejected(f"notices[{number}]: noticeId {notice.notice_id} appears twice")
        seen.add(notice.notice_id)
        notices.append(notice)
    return notices


def agency(response: httpx.Response) -> str:
    """The agency code of GET /v1/agency: whose API key the hub holds."""
    code = response.json()["agency"]
    if not isinstance(code, str):
        raise TypeError(f"agency is {code!r}")
    return code


def recorded(response: httpx.Response) -> int:
    """POST /v1/reports' answer: how many reports it recorded now (the rest it had)."""
    answer = response.json()
    count = answer["recorded"]
    if not isinstance(count, int) or not isinstance(answer["repeated"], int):
        raise TypeError(f"an answer without counts: {answer!r}")
    return count


def refusal(response: httpx.Response) -> Exception:
    """A 4xx `{code, message}`: the request was wrong (our key, unknown notices …)."""
    error = response.json()
    return UpstreamRejected(
        wire.UPSTREAM, f"HTTP {response.status_code} {error['code']}: {error['message']}"
    )


def _rejected(detail: str) -> NoticeRejected:
    return NoticeRejected(RejectReason.MALFORMED, detail)


def _notice(agency: str, item: object) -> AgencyNotice:
    if not isinstance(item, dict):
        raise _Malformed("a notice is an object")
    required = {"noticeId", "type", "citizen", "urgency", "fields", "issuedAt"}
    allowed = required | {"payment", "expiresAt"}
    if missing := required - set(item):
        raise _Malformed(f"{', '.join(sorted(missing))} missing")
    if unknown := set(item) - allowed:
        raise _Malformed(f"unknown {', '.join(sorted(unknown))}")
    notice_id = _matching(item, "noticeId", wire.NOTICE_ID)
    citizen = item["citizen"]
    if not isinstance(citizen, str) or not wire.CITIZEN.match(citizen):
        raise _Malformed(
            "citizen is the 43-character base64url pseudonym, never a CI or resident number"
        )
    try:
        urgency = NoticeUrgency(item["urgency"])
    except ValueError:
        raise _Malformed(f"urgency is urgent or normal, not {item['urgency']!r}") from None
    fields_ko, fields_en = _fields(item["fields"])
    issued_at = _time(item, "issuedAt")
    expires_at = _time(item, "expiresAt") if item.get("expiresAt") is not None else None
    if expires_at is not None and expires_at <= issued_at:
        raise _Malformed("expiresAt is not after issuedAt")
    payment = item.get("payment")
    return AgencyNotice(
        agency=agency,
        notice_id=notice_id,
        notice_type=_matching(item, "type", wire.NOTICE_TYPE),
        citizen=citizen,
        urgency=urgency,
        fields_ko=fields_ko,
        fields_en=fields_en,
        issued_at=issued_at,
        expires_at=expires_at,
        payment=None if payment is None else _payment(payment),
    )


def _matching(item: dict[str, Any], name: str, pattern: re.Pattern[str]) -> str:
    value = item[name]
    if not isinstance(value, str) or not pattern.match(value):
        raise _Malformed(f"{name} {value!r} does not match {pattern.pattern}")
    return value


def _fields(raw: object) -> tuple[dict[str, str], dict[str, str]]:
    """Template variables in both languages: a text is both; {"ko", "en"} differ."""
    if not isinstance(raw, dict) or len(raw) > MAX_FIELDS:
        raise _Malformed(f"fields is an object of at most {MAX_FIELDS} variables")
    ko: dict[str, str] = {}
    en: dict[str, str] = {}
    for name, value in raw.items():
        if not wire.FIELD_NAME.match(name):
            raise _Malformed(f"field name {name!r} does not match {wire.FIELD_NAME.pattern}")
        if isinstance(value, str):
            ko[name] = en[name] = _text(name, value)
        elif isinstance(value, dict) and set(value) == {"ko", "en"}:
            ko[name], en[name] = _text(name, value["ko"]), _text(name, value["en"])
        else:
            raise _Malformed(f"fields.{name} is a text or {{'ko': text, 'en': text}}")
    return ko, en


def _text(name: str, value: object) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise _Malformed(f"fields.{name} is a text of at most {MAX_TEXT} characters")
    return value


def _time(item: dict[str, Any], name: str) -> datetime:
    value = item[name]
    try:
        return wire.instant(value)
    except (TypeError, ValueError):
        raise _Malformed(f"{name} {value!r} is not an ISO 8601 time with an offset") from None


def _payment(raw: object) -> NoticePayment:
    if not isinstance(raw, dict) or set(raw) != {"amount", "epayNo", "dueDate"}:
        raise _Malformed('payment is {"amount", "epayNo", "dueDate"}')
    amount = raw["amount"]
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise _Malformed(f"payment.amount {amount!r} is not a positive whole number of won")
    epay_no = _matching(raw, "epayNo", wire.EPAY_NO)
    try:
        due = date.fromisoformat(raw["dueDate"])
    except (TypeError, ValueError):
        raise _Malformed(f"payment.dueDate {raw['dueDate']!r} is not YYYY-MM-DD") from None
    return NoticePayment(amount, epay_no, due)
