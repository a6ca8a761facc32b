"""An app's webhook receiver for the tests: a real HTTP server on loopback that checks each
request with the verifier docs/notices.md gives apps (examples/notices_webhook_verifier.py),
and records what it accepted.

It can be told to be down (answer 503) or to fail a share of requests, as an app in
trouble would; repeats (the same webhook-id) are answered 200 and counted, not stored
twice, as the at-least-once contract asks of apps.
"""

from __future__ import annotations

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
    fail_share: float = 0.0
    received: list[dict[str, Any]] = field(default_factory=list)  # first copies, in order
    repeats: int = 0
    refused: list[str] = field(default_factory=list)  # why requests were refused
    requests: int = 0
    url: str = ""
    _seen: set[str] = field(default_factory=set)

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
        event_id = request.headers["webhook-id"]
        if event_id in self._seen:
            self.repeats += 1
            return PlainTextResponse("seen")
        self._seen.add(event_id)
        self.received.append(json.loads(body))
        return PlainTextResponse("ok")

    def of(self, citizen: str) -> list[dict[str, Any]]:
        return [r["data"] for r in self.received if r["data"]["citizen"] == citizen]


@asynccontextmanager
async def receiving() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = Starlette(routes=[Route("/hook", receiver.handle, methods=["POST"])])
    async with serving(app) as url:
        receiver.url = url + "/hook"
        yield receiver
