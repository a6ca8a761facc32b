"""The local tax system's wire format (docs/upstreams/localtax.md), shared by both ends.

JSON over HTTP in the envelope of Korean government services: every answer the service
gives itself is HTTP 200 with `{"header": {"resultCode", "resultMsg"}, "body": …}`; 5xx and
429 come from the gateway in front of it. Field names are those of the payment message
formats (EPAY_NO, TAX_GB, TAX_NO …); amounts are strings of digits (integer won), dates
YYYYMMDD and times YYYYMMDDHHMMSS in Korean time.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from enum import StrEnum

UPSTREAM = "localtax"
KST = timezone(timedelta(hours=9), "KST")
DAY = "%Y%m%d"
TIME = "%Y%m%d%H%M%S"
EPAY_NO_LENGTH = 19
MAX_ROWS = 100  # numOfRows of one page of a bill list

API_KEY_HEADER = "X-Api-Key"
INSTITUTION_HEADER = "X-Inst-Cd"  # 수납기관코드 the key was issued to

INSTITUTION = "/localtax/v1/getInstInfo"
BILL = "/localtax/v1/getBill"
BILL_LIST = "/localtax/v1/getBillList"
BILL_FEED = "/localtax/v1/getBillFeed"  # bills as they are issued, after a position
RECEIPT = "/localtax/v1/rcptNotice"
CANCEL = "/localtax/v1/rcptCnclNotice"


class Result(StrEnum):
    """resultCode values. 00-99 below 40 are the data.go.kr codes; 41-46 are this service's."""

    NORMAL = "00"
    APPLICATION_ERROR = "01"
    DB_ERROR = "02"
    NO_DATA = "03"
    SERVICE_TIMEOUT = "05"
    INVALID_PARAMETER = "10"
    MISSING_PARAMETER = "11"
    ACCESS_DENIED = "20"
    QUOTA_EXCEEDED = "22"
    KEY_NOT_REGISTERED = "30"
    ALREADY_PAID = "41"
    AMOUNT_MISMATCH = "42"
    RECEIPT_NO_REUSED = "44"
    NO_RECEIPT = "45"
    CANCEL_EXCEEDS = "46"
    UNKNOWN_ERROR = "99"


MESSAGES = {
    Result.NORMAL: "NORMAL SERVICE",
    Result.APPLICATION_ERROR: "APPLICATION_ERROR",
    Result.DB_ERROR: "DB_ERROR",
    Result.NO_DATA: "NODATA_ERROR",
    Result.SERVICE_TIMEOUT: "SERVICETIME_OUT",
    Result.INVALID_PARAMETER: "INVALID_REQUEST_PARAMETER_ERROR",
    Result.MISSING_PARAMETER: "NO_MANDATORY_REQUEST_PARAMETERS_ERROR",
    Result.ACCESS_DENIED: "SERVICE_ACCESS_DENIED_ERROR",
    Result.QUOTA_EXCEEDED: "LIMITED_NUMBER_OF_SERVICE_REQUESTS_EXCEEDS_ERROR",
    Result.KEY_NOT_REGISTERED: "SERVICE_KEY_IS_NOT_REGISTERED_ERROR",
    Result.ALREADY_PAID: "ALREADY_PAID",
    Result.AMOUNT_MISMATCH: "AMOUNT_MISMATCH",
    Result.RECEIPT_NO_REUSED: "RECEIPT_NO_REUSED",
    Result.NO_RECEIPT: "NO_RECEIPT",
    Result.CANCEL_EXCEEDS: "CANCEL_EXCEEDS",
    Result.UNKNOWN_ERROR: "UNKNOWN_ERROR",
}


def kst_time(moment: datetime) -> str:
    """A timezone-aware moment as YYYYMMDDHHMMSS in Korean time."""
    if moment.utcoffset() is None:
        raise ValueError(f"{moment} has no timezone; notices carry an exact moment")
    return moment.astimezone(KST).strftime(TIME)


def parse_kst_time(text: str) -> datetime:
    return datetime.strptime(text, TIME).replace(tzinfo=KST)
