"""What every data.go.kr service answers alike: the result codes of its envelope and their
messages (research file `korea-apis.md`, section 0). Adapters of such services (tago,
rfidwaste) and their sandboxes read and write these."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """resultCode / returnReasonCode values."""

    NORMAL = "00"
    APPLICATION_ERROR = "01"
    DB_ERROR = "02"
    NO_DATA = "03"
    SERVICE_TIMEOUT = "05"
    INVALID_PARAMETER = "10"
    MISSING_PARAMETER = "11"
    NO_SERVICE = "12"
    ACCESS_DENIED = "20"
    KEY_DISABLED = "21"
    QUOTA_EXCEEDED = "22"
    PER_SECOND_EXCEEDED = "23"
    KEY_NOT_REGISTERED = "30"
    KEY_EXPIRED = "31"
    UNKNOWN_ERROR = "99"


MESSAGES = {
    Reason.NORMAL: "NORMAL_SERVICE",
    Reason.APPLICATION_ERROR: "APPLICATION_ERROR",
    Reason.DB_ERROR: "DB_ERROR",
    Reason.NO_DATA: "NODATA_ERROR",
    Reason.SERVICE_TIMEOUT: "SERVICETIME_OUT",
    Reason.INVALID_PARAMETER: "INVALID_REQUEST_PARAMETER_ERROR",
    Reason.MISSING_PARAMETER: "NO_MANDATORY_REQUEST_PARAMETERS_ERROR",
    Reason.NO_SERVICE: "NO_OPENAPI_SERVICE_ERROR",
    Reason.ACCESS_DENIED: "SERVICE_ACCESS_DENIED_ERROR",
    Reason.KEY_DISABLED: "TEMPORARILY_DISABLE_THE_SERVICEKEY_ERROR",
    Reason.QUOTA_EXCEEDED: "LIMITED_NUMBER_OF_SERVICE_REQUESTS_EXCEEDS_ERROR",
    Reason.PER_SECOND_EXCEEDED: "LIMITED_NUMBER_OF_SERVICE_REQUESTS_PER_SECOND_EXCEEDS_ERROR",
    Reason.KEY_NOT_REGISTERED: "SERVICE_KEY_IS_NOT_REGISTERED_ERROR",
    Reason.KEY_EXPIRED: "DEADLINE_HAS_EXPIRED_ERROR",
    Reason.UNKNOWN_ERROR: "UNKNOWN_ERROR",
}
