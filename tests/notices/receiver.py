"""An app's webhook receiver for the tests: a real HTTP server on loopback that checks each
request with the verifier docs/notices.md gives apps (examples/notices_webhook_verifier.py),
and records what it accepted.

It can be told to be down (answer 503), to fail a share of requests, or to hang (accept
the request and not answer until the test ends), as an app in trouble would. A batch
(`notice.batch`) is taken notice by notice; repeats (an event id taken before) are
answered 200 and counted, not stored twice, as the at-least-once contract asks of apps.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from hub.serve import serving
from resolvers.notices import signing

VERIFIER_PATH = Path(__file__).parents[2] / "examples" / "notices_webhook_verifier.py"


def _verifier_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("notices_webhook_verifier", VERIFIER_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


VERIFIER = _verifier_module()


@dataclass
class Receiver:
    secrets: list[bytes] = field(default_factory=list)  # accepted signing keys
    down: bool = False
    hanging: bool = False  # take requests and answer none until `release()`
    hung: list[str] = field(default_factory=list)  # event ids of the requests left hanging
    fail_share: float = 0.0
    received: list[dict[str, Any]] = field(default_factory=list)  # first copies, in order
    repeats: int = 0
    refused: list[str] = field(default_factory=list)  # why requests were refused
    requests: int = 0
    url: str = ""
    batches: int = 0  # notice.batch requests taken
    _seen: set[str] = field(default_factory=set)
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: Request) -> Response:
        self.requests += 1
        if self.down or random.random() < self.fail_share:
            return PlainTextResponse("unavailable", status_code=503)
        body = await request.body()
        if not self.secrets:
            self.refused.append("no secret")
            return PlainTextResponse("no secret", status_code=400)
        verifier = VERIFIER.Verifier(
            [signing.shown(secret) for secret in self.secrets], VERIFIER.MemoryEvents()
        )
        try:
            verifier.verify(body, request.headers)
        except VERIFIER.Rejected as exc:
            self.refused.append(exc.reason)
            return PlainTextResponse(exc.reason, status_code=400)
        event = json.loads(body)
        if event["type"] == "notice.batch":
            self.batches += 1
            notices = [{"type": "notice.received", "data": n} for n in event["data"]["notices"]]
        else:
            notices = [event]
        if self.hanging:
            self.hung += [n["data"]["eventId"] for n in notices]
            await self._released.wait()  # the hub gave up long before
            return PlainTextResponse("too late", status_code=503)
        for notice in notices:
            event_id = notice["data"]["eventId"]
            if event_id in self._seen:
                self.repeats += 1
                continue
            self._seen.add(event_id)
            self.received.append(notice)
        return PlainTextResponse("ok")

    def release(self) -> None:
        """Let the hanging requests end (so the server can stop)."""
        self._released.set()

    def of(self, citizen: str) -> list[dict[str, Any]]:
        return [r["data"] for r in self.received if r["data"]["citizen"] == citizen]


@asynccontextmanager
async def receiving() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = Starlette(routes=[Route("/hook", receiver.handle, methods=["POST"])])
    async with serving(app) as url:
        receiver.url = url + "/hook"
        try:
            yield receiver
        finally:
            receiver.release()  # before the server stops: it waits for its requests
