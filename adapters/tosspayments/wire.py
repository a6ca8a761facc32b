"""Toss Payments' formats, read by the adapter and written by the sandbox.

One module for both sides, so the sandbox cannot drift from what the adapter reads: the
payment object, `{code, message}` errors, the settlement CSV and the webhook signature.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import httpx

from adapters.errors import MalformedResponse, UpstreamRejected
from adapters.kinds import Declined, GatewayCancel, GatewayPayment, SettlementRow

UPSTREAM = "tosspayments"
KST = timezone(timedelta(hours=9), "KST")

# 4xx codes that mean our credentials are wrong, not that the operation was refused.
KEY_ERRORS = frozenset(
    {"UNAUTHORIZED_KEY", "INVALID_API_KEY", "INVALID_CLIENT_KEY", "INCORRECT_BASIC_AUTH_FORMAT"}
)
NOT_FOUND = frozenset({"NOT_FOUND_PAYMENT"})

SETTLEMENT_COLUMNS = (
    "settlementDate",
    "transactionType",
    "paymentKey",
    "orderId",
    "transactionKey",
    "method",
    "amount",
    "fee",
    "payout",
    "transactedAt",
)

TRANSMISSION_ID = "tosspayments-webhook-transmission-id"
TRANSMISSION_TIME = "tosspayments-webhook-transmission-time"
SIGNATURE = "tosspayments-webhook-signature"


def basic_auth(secret_key: str) -> str:
    """The Authorization header: the secret key as a Basic user name, no password."""
    return "Basic " + base64.b64encode(f"{secret_key}:".encode()).decode()


def timestamp(moment: datetime) -> str:
    """Toss writes times in KST with an offset, to the second: 2024-02-13T12:18:14+09:00."""
    return moment.astimezone(KST).replace(microsecond=0).isoformat()


def instant(text: str) -> datetime:
    """A Toss time as timezone-aware UTC; a time without an offset is KST."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=KST)
    return moment.astimezone(UTC)


def payment_of(raw: dict[str, Any]) -> GatewayPayment:
    card = raw.get("card") or {}
    cancels = raw.get("cancels") or []
    approved_at = raw.get("approvedAt")
    return GatewayPayment(
        payment_key=str(raw["paymentKey"]),
        order_id=str(raw["orderId"]),
        status=str(raw["status"]),
        total_amount=int(raw["totalAmount"]),
        balance_amount=int(raw["balanceAmount"]),
        method=str(raw.get("method") or ""),
        card_number=str(card.get("number") or ""),
        approve_no=str(card.get("approveNo") or ""),
        requested_at=instant(raw["requestedAt"]),
        approved_at=instant(approved_at) if approved_at else None,
        cancels=tuple(
            GatewayCancel(
                transaction_key=str(cancel["transactionKey"]),
                amount=int(cancel["cancelAmount"]),
                reason=str(cancel["cancelReason"]),
                canceled_at=instant(cancel["canceledAt"]),
            )
            for cancel in cancels
            if cancel.get("cancelStatus", "DONE") == "DONE"
        ),
    )


def payment(response: httpx.Response) -> GatewayPayment:
    return payment_of(response.json())


def refusal(response: httpx.Response) -> Exception:
    """A 4xx `{code, message}`: Declined, or UpstreamRejected when our key is wrong."""
    error = response.json()
    code, message = str(error["code"]), str(error["message"])
    if code in KEY_ERRORS:
        return UpstreamRejected(UPSTREAM, f"{code}: {message}")
    return Declined(code, message)


def fee(amount: int) -> int:
    """The sandbox's fee rule: 0.8 % of the amount, half up, with the amount's sign."""
    sign = -1 if amount < 0 else 1
    return sign * ((abs(amount) * 8 + 500) // 1000)


def settlements(response: httpx.Response) -> list[SettlementRow]:
    text = response.text
    if text and not text.endswith("\n"):
        raise MalformedResponse(UPSTREAM, "the settlement file ends in the middle of a row")
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != SETTLEMENT_COLUMNS:
        raise MalformedResponse(UPSTREAM, f"settlement columns are {reader.fieldnames}")
    return [
        SettlementRow(
            settlement_date=date.fromisoformat(row["settlementDate"]),
            payment_key=row["paymentKey"],
            order_id=row["orderId"],
            transaction_key=row["transactionKey"],
            kind=row["transactionType"],
            amount=int(row["amount"]),
            fee=int(row["fee"]),
            payout=int(row["payout"]),
            transacted_at=instant(row["transactedAt"]),
        )
        for row in reader
    ]


def signature(secret: str, body: bytes, transmission_time: str) -> str:
    """`v1:` + base64(HMAC-SHA256(secret, "{body}:{transmission time}"))."""
    signed = body + b":" + transmission_time.encode()
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return "v1:" + base64.b64encode(digest).decode()
