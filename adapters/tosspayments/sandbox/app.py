"""The sandbox's HTTP face: Toss's /v1 API, the SoftPOS reader's server side, and the
control API under /_sandbox/ (webhook receiver and faults, settlement faults, clock).
docs/upstreams/tosspayments.md describes every path."""

from __future__ import annotations

import base64
import binascii
import contextlib
import csv
import hmac
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapters.tosspayments import wire
from adapters.tosspayments.sandbox.gateway import (
    DEFAULT_CARD,
    METHOD,
    Gateway,
    TossError,
    invalid,
    rendered,
)
from adapters.tosspayments.sandbox.idempotency import Keys
from adapters.tosspayments.sandbox.webhooks import Behaviour, Webhooks

# The sandbox's own credentials, published so that anyone may call it.
SECRET_KEY = "test_sk_ieumSandbox0000000000000"  # noqa: S105
WEBHOOK_SECRET = "ieum-sandbox-webhook-secret"  # noqa: S105
JSON = "application/json"

Operation = Callable[[Request, dict[str, Any]], dict[str, Any]]
Endpoint = Callable[[Request], Awaitable[Response]]


class Config(BaseModel):
    """The sandbox's settings, set by tests through POST /_sandbox/config (fields merge)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhookUrl: str | None = None
    webhookSecret: str = WEBHOOK_SECRET
    webhookDelaySeconds: float = Field(default=0.0, ge=0, le=60)
    webhookRetrySeconds: float = Field(default=0.2, gt=0, le=60)
    webhookDuplicate: bool = False
    webhookDrop: bool = False
    webhookReorder: bool = False
    webhookReorderHoldSeconds: float = Field(default=1.0, ge=0, le=60)
    settlementOmitOrders: list[str] = []
    settlementAlterAmounts: dict[str, int] = {}
    clockOffsetSeconds: float = 0.0

    def behaviour(self) -> Behaviour | None:
        if self.webhookUrl is None:
            return None
        return Behaviour(
            url=self.webhookUrl,
            secret=self.webhookSecret,
            delay=self.webhookDelaySeconds,
            retry_seconds=self.webhookRetrySeconds,
            duplicate=self.webhookDuplicate,
            drop=self.webhookDrop,
            reorder=self.webhookReorder,
            reorder_hold=self.webhookReorderHoldSeconds,
        )


class World:
    """One sandbox's state: its clock, books, idempotency keys and webhook sender."""

    def __init__(self) -> None:
        self.config = Config()
        self.gateway = Gateway(self.now)
        self.keys = Keys(self.now)
        self.webhooks = Webhooks(self.now)

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.config.clockOffsetSeconds)

    def emit(self, payment: dict[str, Any]) -> None:
        self.webhooks.emit(payment, self.config.behaviour())


def _text(body: dict[str, Any], name: str, default: str | None = None) -> str:
    value = body.get(name, default)
    if not isinstance(value, str) or not value:
        raise invalid(f"{name}: 값이 없거나 문자열이 아닙니다.")
    return value


def _integer(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid(f"{name}: 값이 없거나 정수가 아닙니다.")
    return value


def _unauthorized(request: Request) -> TossError | None:
    """Basic authentication with the secret key as user name and no password."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not token:
        return TossError(
            401, "UNAUTHORIZED_KEY", "인증되지 않은 시크릿 키 혹은 클라이언트 키 입니다."
        )
    try:
        user, colon, _ = base64.b64decode(token, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        user, colon = "", ""
    if not colon:
        return TossError(
            403, "INCORRECT_BASIC_AUTH_FORMAT", "잘못된 요청입니다. ':' 를 포함해 인코딩해주세요."
        )
    if not hmac.compare_digest(user.encode(), SECRET_KEY.encode()):
        return TossError(
            401, "UNAUTHORIZED_KEY", "인증되지 않은 시크릿 키 혹은 클라이언트 키 입니다."
        )
    return None


def _encoded(answer: dict[str, Any]) -> bytes:
    return json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode()


def _error(error: TossError) -> Response:
    return Response(_encoded(error.body()), error.status, media_type=JSON)


def _body(raw: bytes) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise invalid("요청 본문이 JSON이 아닙니다.") from None
    if not isinstance(body, dict):
        raise invalid("요청 본문은 JSON 객체여야 합니다.")
    return body


def api(world: World, operation: Operation, *, authenticated: bool = True) -> Endpoint:
    """An endpoint: authentication, then Idempotency-Key on POSTs, then the operation.

    Authentication comes first and is never stored, as a rate limit comes first at Stripe.
    """

    async def endpoint(request: Request) -> Response:
        if authenticated and (refused := _unauthorized(request)) is not None:
            return _error(refused)
        raw = await request.body()
        key = request.headers.get("idempotency-key") if request.method == "POST" else None
        path = request.url.path
        if key is not None:
            try:
                stored = world.keys.replay(request.method, path, key, raw)
            except TossError as exc:
                return _error(exc)
            if stored is not None:
                headers = {"Idempotent-Replayed": "true"}
                return Response(stored.body, stored.status, headers=headers, media_type=JSON)
        try:
            status, answer = 200, operation(request, _body(raw))
        except TossError as exc:
            status, answer = exc.status, exc.body()
        content = _encoded(answer)
        if key is not None:
            world.keys.store(request.method, path, key, raw, status, content)
        return Response(content, status, media_type=JSON)

    return endpoint


def create_app() -> Starlette:
    world = World()
    gateway = world.gateway

    def card_present(request: Request, body: dict[str, Any]) -> dict[str, Any]:
        payment = gateway.open_session(
            _text(body, "orderId"),
            _text(body, "orderName", "Ieum 납부"),
            _integer(body, "amount"),
            _text(body, "cardNumber", DEFAULT_CARD),
        )
        return {
            "paymentKey": payment.payment_key,
            "orderId": payment.order_id,
            "amount": payment.amount,
            "status": payment.status,
        }

    def confirm(request: Request, body: dict[str, Any]) -> dict[str, Any]:
        key = _text(body, "paymentKey")
        try:
            payment = gateway.confirm(key, _text(body, "orderId"), _integer(body, "amount"))
        except TossError as exc:
            declined = gateway.payments.get(key)
            if declined is not None and declined.failure is exc:
                world.emit(rendered(declined))  # ABORTED is a status change too
            raise
        answer = rendered(payment)
        world.emit(answer)
        return answer

    def cancel(request: Request, body: dict[str, Any]) -> dict[str, Any]:
        reason = _text(body, "cancelReason")
        if len(reason) > 200:
            raise invalid("cancelReason는 200자 이하입니다.")
        amount = _integer(body, "cancelAmount") if "cancelAmount" in body else None
        if amount is not None and amount <= 0:
            raise invalid("cancelAmount는 0보다 커야 합니다.")
        payment = gateway.cancel(request.path_params["paymentKey"], amount, reason)
        answer = rendered(payment)
        world.emit(answer)
        return answer

    def by_key(request: Request, body: dict[str, Any]) -> dict[str, Any]:
        return rendered(gateway.payment(request.path_params["paymentKey"]))

    def by_order(request: Request, body: dict[str, Any]) -> dict[str, Any]:
        return rendered(gateway.by_order(request.path_params["orderId"]))

    async def settlements(request: Request) -> Response:
        if (refused := _unauthorized(request)) is not None:
            return _error(refused)
        try:
            day = date.fromisoformat(request.query_params.get("date", ""))
        except ValueError:
            return _error(invalid("date는 YYYY-MM-DD 형식의 날짜입니다."))
        return Response(settlement_file(world, day), media_type="text/csv; charset=utf-8")

    async def config(request: Request) -> Response:
        if request.method == "DELETE":
            world.webhooks.cancel()
            world.config = Config()
        elif request.method == "POST":
            try:
                changes = json.loads(await request.body())
                world.config = Config.model_validate({**world.config.model_dump(), **changes})
            except (ValueError, TypeError, ValidationError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            if "webhookUrl" in changes:
                world.webhooks.cancel()  # deliveries to the old receiver stop
        return JSONResponse(world.config.model_dump())

    async def webhooks(request: Request) -> Response:
        return JSONResponse([delivery.report() for delivery in world.webhooks.deliveries])

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await world.webhooks.aclose()

    return Starlette(
        lifespan=lifespan,
        routes=[
            Route(
                "/v1/sandbox/card-present",
                api(world, card_present, authenticated=False),
                methods=["POST"],
            ),
            Route("/v1/payments/confirm", api(world, confirm), methods=["POST"]),
            Route("/v1/payments/orders/{orderId}", api(world, by_order), methods=["GET"]),
            Route("/v1/payments/{paymentKey}", api(world, by_key), methods=["GET"]),
            Route("/v1/payments/{paymentKey}/cancel", api(world, cancel), methods=["POST"]),
            Route("/v1/settlements.csv", settlements, methods=["GET"]),
            Route("/_sandbox/config", config, methods=["GET", "POST", "DELETE"]),
            Route("/_sandbox/webhooks", webhooks, methods=["GET"]),
        ],
    )


def settlement_file(world: World, day: date) -> str:
    """The day's settlement CSV, with the discrepancies the config asks for."""
    omit, alter = set(world.config.settlementOmitOrders), world.config.settlementAlterAmounts
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(wire.SETTLEMENT_COLUMNS)
    for line in world.gateway.transactions_on(day):
        if line.order_id in omit:
            continue
        amount = alter.get(line.order_id, line.amount) if line.kind == "PAYMENT" else line.amount
        fee = wire.fee(amount)
        writer.writerow(
            [
                day.isoformat(),
                line.kind,
                line.payment_key,
                line.order_id,
                line.transaction_key,
                METHOD,
                amount,
                fee,
                amount - fee,
                wire.timestamp(line.at),
            ]
        )
    return out.getvalue()
