"""The partner booking API's wire format (docs/upstreams/railbooking.md), shared by the
adapter and its sandbox so that neither can drift from the other.

JSON over HTTPS. Field names are those of Korail's ticketing messages (`h_pnr_no`,
`h_srcar_no`, `h_seat_no`, `h_rcvd_amt` …); amounts are zero-padded strings of digits
(integer won), dates YYYYMMDD and times HHMMSS in Korean time. Every answer carries
`strResult` (SUCC or FAIL) with `h_msg_cd` and `h_msg_txt`; a FAIL comes with a 4xx status.
Calls are signed by the partner: HMAC-SHA256 of the request with the partner's key, carried
in the query string with the partner id and the time of signing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any
from urllib.parse import quote

UPSTREAM = "railbooking"
KST = timezone(timedelta(hours=9), "KST")
DAY = "%Y%m%d"
TIME = "%H%M%S"
AMOUNT_DIGITS = 8  # h_rcvd_amt "00059800"
TRAIN_DIGITS = 5  # h_trn_no "00101"

PARTNER = "/partner/v1/partner"
SEATS = "/partner/v1/seats"
SEATS_QUERY = "/partner/v1/seats/query"  # several trains' seats in one call
RESERVATIONS = "/partner/v1/reservations"

PARTNER_ID = "partner_id"  # query parameters of the signature
TIMESTAMP = "timestamp"
SIGNATURE = "signature"
SIGNATURE_TOLERANCE_SECONDS = 300

MAX_PASSENGERS = 9  # seats one reservation may hold, as Korail allows
MAX_SEAT_QUERIES = 30  # trains one seats query may ask about


def reservation_path(pnr: str, action: str = "") -> str:
    """/partner/v1/reservations/{pnr}[/ticket|/release|/refund]."""
    path = f"{RESERVATIONS}/{quote(pnr, safe='')}"
    return f"{path}/{action}" if action else path


class Code(StrEnum):
    """h_msg_cd values. WRG000000 is the code SR's app answers for "no results"."""

    OK = "IRZ000001"
    NOT_FOUND = "WRG000000"
    INVALID = "ERR000010"
    UNKNOWN_PARTNER = "ERR000401"
    BAD_SIGNATURE = "ERR000402"
    STALE_SIGNATURE = "ERR000403"
    SOLD_OUT = "ERR211161"
    HOLD_LAPSED = "ERR211162"
    ALREADY_TICKETED = "ERR211163"
    DEPARTED = "ERR211164"
    AMOUNT_MISMATCH = "ERR211165"
    NOT_TICKETED = "ERR211166"
    ARRIVED = "ERR211167"
    REF_REUSED = "ERR211168"
    RELEASED = "ERR211169"
    NO_SUCH_TRAIN = "ERR211170"
    NOT_ON_SALE = "ERR211171"
    TRAIN_CANCELLED = "ERR211172"


MESSAGES = {
    Code.OK: "정상 처리되었습니다.",
    Code.NOT_FOUND: "조회 결과가 없습니다.",
    Code.INVALID: "요청 값이 올바르지 않습니다.",
    Code.UNKNOWN_PARTNER: "등록되지 않은 제휴사입니다.",
    Code.BAD_SIGNATURE: "서명이 올바르지 않습니다.",
    Code.STALE_SIGNATURE: "서명 시각이 허용 범위를 벗어났습니다.",
    Code.SOLD_OUT: "잔여석이 없습니다.",
    Code.HOLD_LAPSED: "결제 기한이 지나 예약이 취소되었습니다.",
    Code.ALREADY_TICKETED: "이미 발권된 예약입니다.",
    Code.DEPARTED: "열차가 이미 출발하였습니다.",
    Code.AMOUNT_MISMATCH: "결제 금액이 예약 금액과 다릅니다.",
    Code.NOT_TICKETED: "발권되지 않은 예약입니다.",
    Code.ARRIVED: "열차가 도착하여 반환할 수 없습니다.",
    Code.REF_REUSED: "제휴사 예약번호가 다른 예약 요청에 이미 사용되었습니다.",
    Code.RELEASED: "예약이 취소되었습니다.",
    Code.NO_SUCH_TRAIN: "해당 구간을 운행하는 열차가 없습니다.",
    Code.NOT_ON_SALE: "예매 기간이 아닙니다.",
    Code.TRAIN_CANCELLED: "운행이 취소된 열차입니다.",
}

# FAIL codes that say our credentials or clock are wrong, not that the operator refused.
CREDENTIAL_CODES = frozenset({Code.UNKNOWN_PARTNER, Code.BAD_SIGNATURE, Code.STALE_SIGNATURE})


class Status(StrEnum):
    """h_rsv_stt_cd: where a reservation is (kinds.RailReservation.status)."""

    HELD = "HELD"  # seats held until the pay-by time
    TICKETED = "TICKETED"  # paid and issued: h_orgtk_* set
    RELEASED = "RELEASED"  # the partner gave the hold back
    CANCELLED = "CANCELLED"  # the operator cancelled the hold: its pay-by time passed
    REFUNDED = "REFUNDED"  # the ticket was returned: h_ret_amt refunded, h_ret_fee kept
    TRAIN_CANCELLED = "TRAIN_CANCELLED"  # ticketed, then the operator cancelled the train


class ClassCode(StrEnum):
    """h_psrm_cl_cd: 1 general (일반실), 2 special (특실)."""

    GENERAL = "1"
    SPECIAL = "2"


class Sale(StrEnum):
    """h_gen_rsv_cd / h_spe_rsv_cd of Korail's train search."""

    NO_SUCH_CLASS = "00"
    AVAILABLE = "11"
    SOLD_OUT = "13"


def delay(minutes: int) -> str:
    """h_expct_dlay_hr: the expected delay as HHMMSS ("002500" for 25 minutes)."""
    hours, rest = divmod(minutes, 60)
    return f"{hours:02d}{rest:02d}00"


def delay_minutes(text: str) -> int | None:
    """h_expct_dlay_hr read back: HHMMSS, or HHMM as some of Korail's answers carry it;
    None when it is neither."""
    if not text.isascii() or not text.isdigit() or len(text) not in (4, 6):
        return None
    hours, minutes = int(text[:2]), int(text[2:4])
    return hours * 60 + minutes if minutes < 60 else None


def amount(won: int) -> str:
    return f"{won:0{AMOUNT_DIGITS}d}"


def train_no(number: str) -> str:
    return number.zfill(TRAIN_DIGITS)


def day(moment: date) -> str:
    return moment.strftime(DAY)


def kst(moment: datetime) -> tuple[str, str]:
    """A timezone-aware moment as (YYYYMMDD, HHMMSS) in Korean time."""
    local = moment.astimezone(KST)
    return local.strftime(DAY), local.strftime(TIME)


def canonical(body: Mapping[str, Any] | None) -> bytes:
    """The body as signed: its JSON with sorted keys and no spaces, UTF-8; empty if none."""
    if not body:
        return b""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def string_to_sign(
    method: str, path: str, query: Mapping[str, str], timestamp: str, body: bytes
) -> bytes:
    """METHOD, path, the other query parameters sorted, the timestamp and the body's
    SHA-256, one per line."""
    pairs = sorted(
        (name, value) for name, value in query.items() if name not in (TIMESTAMP, SIGNATURE)
    )
    encoded = "&".join(f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in pairs)
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join((method.upper(), path, encoded, timestamp, digest)).encode()


def signature(key: str, signed: bytes) -> str:
    return hmac.new(key.encode(), signed, hashlib.sha256).hexdigest()


def signed_query(
    partner_id: str,
    key: str,
    method: str,
    path: str,
    params: Mapping[str, str],
    body: Mapping[str, Any] | None,
    now: datetime,
) -> dict[str, str]:
    """`params` with the partner id, the time of signing and the signature added."""
    query = {**params, PARTNER_ID: partner_id}
    timestamp = str(int(now.timestamp()))
    signed = string_to_sign(method, path, query, timestamp, canonical(body))
    return {**query, TIMESTAMP: timestamp, SIGNATURE: signature(key, signed)}
