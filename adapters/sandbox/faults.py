"""Faults a sandbox injects on request, so tests see what a real system does on a bad day.

A plan is posted as JSON to `POST /_faults` and applies to the sandbox's other paths until
`DELETE /_faults` (or until `count` requests have met it). `GET /_faults` shows it. Paths
that start with `/_` are a sandbox's control API (its own settings, for tests): no plan
touches them and `served` does not count them.

    {"error": "5xx", "status": 503}                  every request answers 503
    {"error": "rate_limited", "retry_after": 1}      429 with Retry-After: 1
    {"error": "malformed", "count": 1}               the next answer is cut in half
    {"error": "hang"}                                no answer until the client gives up
    {"error": "hang_after"}                          the request is carried out (money moves),
                                                     then no answer until the client gives up
    {"error": "5xx_after", "status": 503}            carried out, then answered 503
    {"latency_seconds": 0.5, "path": "getMsrstnList"}  slow answers on matching paths

The `…_after` faults are the ones a payment must survive: the upstream did the work and
the caller cannot tell.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ADMIN_PATH = "/_faults"
Error = Literal["5xx", "rate_limited", "malformed", "hang", "hang_after", "5xx_after"]


class FaultPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    error: Error | None = None
    status: int = Field(default=503, ge=500, le=599, description="status of a 5xx fault")
    retry_after: int = Field(default=1, ge=0, description="Retry-After of a 429, seconds")
    latency_seconds: float = Field(default=0.0, ge=0, le=60)
    count: int | None = Field(default=None, ge=1, description="requests to affect; all if none")
    path: str | None = Field(default=None, description="only paths containing this text")


class FaultInjector:
    """ASGI middleware in front of a sandbox app, holding the current plan."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.plan: FaultPlan | None = None
        self.served = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == ADMIN_PATH:
            await admin(self, scope, receive, send)
            return
        if scope["path"].startswith("/_"):
            await self.app(scope, receive, send)
            return
        self.served += 1
        plan = self._take(scope["path"])
        if plan is None:
            await self.app(scope, receive, send)
            return
        await asyncio.sleep(plan.latency_seconds)
        if plan.error == "hang":
            await _until_disconnect(receive)
        elif plan.error == "hang_after":
            await self.app(scope, receive, _discard)
            await _until_disconnect(receive)
        elif plan.error == "5xx_after":
            await self.app(scope, receive, _discard)
            await _answer(send, plan.status, b"Internal Server Error", {})
        elif plan.error == "5xx":
            await _answer(send, plan.status, b"Internal Server Error", {})
        elif plan.error == "rate_limited":
            headers = {"retry-after": str(plan.retry_after)}
            await _answer(send, 429, b"Too Many Requests", headers)
        elif plan.error == "malformed":
            await self.app(scope, receive, _truncating(send))
        else:
            await self.app(scope, receive, send)

    def _take(self, path: str) -> FaultPlan | None:
        plan = self.plan
        if plan is None or (plan.path is not None and plan.path not in path):
            return None
        if plan.count is not None:
            left = plan.count - 1
            self.plan = plan.model_copy(update={"count": left}) if left else None
        return plan


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _discard(message: Message) -> None:
    """The app's answer, lost on the way back."""


async def _answer(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    raw += [(name.encode(), value.encode()) for name, value in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _truncating(send: Send) -> Send:
    """Send the app's answer cut in half, as a dropped connection or a broken proxy would."""
    start: Message = {}
    body = bytearray()

    async def truncated(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
            return
        body.extend(message.get("body", b""))
        if message.get("more_body"):
            return
        cut = bytes(body[: len(body) // 2])
        headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(cut)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": cut})

    return truncated


async def admin(injector: FaultInjector, scope: Scope, receive: Receive, send: Send) -> None:
    """`/_faults`: GET shows the plan, POST sets one, DELETE clears it."""
    request = Request(scope, receive)
    if request.method == "POST":
        try:
            injector.plan = FaultPlan.model_validate_json(await request.body())
        except ValidationError as exc:
            await JSONResponse({"error": str(exc)}, status_code=400)(scope, receive, send)
            return
    elif request.method == "DELETE":
        injector.plan = None
    elif request.method != "GET":
        await JSONResponse({"error": "use GET, POST or DELETE"}, 405)(scope, receive, send)
        return
    plan = injector.plan.model_dump() if injector.plan else None
    await JSONResponse({"plan": plan, "served": injector.served})(scope, receive, send)
