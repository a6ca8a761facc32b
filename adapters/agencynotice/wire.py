"""The agency notice format (docs/upstreams/agencynotice.md), read by the adapter and
written by the sandbox, so the two cannot drift.

An agency POSTs a submission of notices to the hub, signed the Standard Webhooks way
(`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`) with a
key it shares with the hub, and names itself in `ieum-agency`. The hub sends receipts back
to the agency's `/v1/reports` with the API key the agency issued it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from adapters.kinds import NoticeReport

UPSTREAM = "agencynotice"
KST = timezone(timedelta(hours=9), "KST")

REQUEST_ID = "webhook-id"  # the same on every retry of a submission
TIMESTAMP = "webhook-timestamp"  # unix seconds of this attempt
SIGNATURE = "webhook-signature"  # "v1,<base64>", space-separated: one per key in use
AGENCY = "ieum-agency"  # whose key signed it

AGENCY_PATH = "/v1/agency"  # who the API key belongs to: the health check
REPORTS_PATH = "/v1/reports"  # receipts of delivery and reading

SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
SECRET_BYTES = (24, 64)  # the shortest and longest key, in bytes
MAX_NOTICES = 100  # notices in one submission
MAX_REPORTS = 500  # reports in one request to the agency

AGENCY_CODE = re.compile(r"^[0-9A-Z]{7}$")  # 행정표준코드: 6110000, B552584 …
REQUEST_ID_FORMAT = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
NOTICE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
NOTICE_TYPE = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
CITIZEN = re.compile(r"^[A-Za-z0-9_-]{43}$")  # base64url of 32 bytes, unpadded
FIELD_NAME = re.compile(r"^[a-z][A-Za-z0-9_]{0,39}$")
EPAY_NO = re.compile(r"^[0-9]{19}$")


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret; ValueError for anything else."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a signing secret starts with {SECRET_PREFIX}")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError("a signing secret is whsec_ and base64") from None
    shortest, longest = SECRET_BYTES
    if not shortest <= len(key) <= longest:
        raise ValueError(f"a signing key is {shortest} to {longest} bytes, not {len(key)}")
    return key


def secret_text(key: bytes) -> str:
    return SECRET_PREFIX + base64.b64encode(key).decode()


def signature(key: bytes, request_id: str, timestamp: str, body: bytes) -> str:
    """`v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")) over the raw body."""
    signed = f"{request_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signatures(keys: list[bytes], request_id: str, timestamp: str, body: bytes) -> str:
    """The header value: one signature per key, so either side of a rotation accepts it."""
    return " ".join(signature(key, request_id, timestamp, body) for key in keys)


def citizen_ref(ci: str, linking_key: bytes) -> str:
    """The pseudonym a notice names its citizen by: base64url(HMAC-SHA256(key, CI)).

    CI (연계정보) is the 88-character identifier 본인확인기관 derive from a resident number;
    the agency and the hub (when the citizen verifies their identity to opt in) each
    derive the same pseudonym, so neither CI nor a resident number travels with a notice.
    """
    digest = hmac.new(linking_key, ci.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def timestamp(moment: datetime) -> str:
    """Times on the wire: KST with its offset, to the second."""
    return moment.astimezone(KST).replace(microsecond=0).isoformat()


def instant(text: str) -> datetime:
    """A wire time as UTC; ValueError without an offset (the format requires one)."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return moment.astimezone(UTC)


def encoded(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def report_item(report: NoticeReport) -> dict[str, Any]:
    item = {
        "noticeId": report.notice_id,
        "status": report.status.value,
        "at": timestamp(report.at),
    }
    if report.reason:
        item["reason"] = report.reason
    return item
