"""examples/notices_webhook_verifier.py, the verifier apps copy: it takes what Ieum signs
(the Standard Webhooks test vector, the hub's own signer) and detects a forged body, a
wrong secret, a replay, a duplicate event id and a retired secret, each by its reason."""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import importlib.util
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from resolvers.notices import signing

PATH = Path(__file__).parents[2] / "examples" / "notices_webhook_verifier.py"
OLD = "whsec_" + base64.b64encode(b"the app's first secret, 32 bytes").decode()
NEW = "whsec_" + base64.b64encode(b"the app's second secret, 32 byte").decode()
BODY = json.dumps(
    {"type": "notice.received", "data": {"eventId": "evt_1", "noticeType": "fine_issued"}},
    ensure_ascii=False,
).encode()


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("notices_webhook_verifier", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


example = load()


def sign(
    body: bytes, secrets: list[str], event_id: str = "evt_1", at: float | None = None
) -> dict[str, str]:
    """Headers signed as the scheme says, written here apart from the example's code."""
    stamp = str(int(time.time() if at is None else at))
    signatures = []
    for secret in secrets:
        key = base64.b64decode(secret.removeprefix("whsec_"))
        mac = hmac.new(key, f"{event_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
        signatures.append("v1," + base64.b64encode(mac).decode())
    return {
        "Webhook-Id": event_id,
        "Webhook-Timestamp": stamp,
        "Webhook-Signature": " ".join(signatures),
        "Content-Type": "application/json",
    }


def verifier(*secrets: str, **options: Any) -> Any:
    return example.Verifier(list(secrets), example.MemoryEvents(), **options)


def reason(verifier: Any, body: bytes, headers: dict[str, str]) -> str:
    with pytest.raises(example.Rejected) as refused:
        verifier.verify(body, headers)
    return str(refused.value.reason)


def test_the_standard_webhooks_test_vector_is_taken() -> None:
    vector = verifier("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", clock=lambda: 1614265330.0)
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    assert vector.verify(b'{"test": 2432232314}', headers) == {"test": 2432232314}
    assert reason(vector, b'{"test": 2432232315}', headers) == "bad_signature"


def test_a_delivery_signed_by_the_hubs_signer_is_taken_across_a_rotation() -> None:
    old, new = signing.key_of(OLD), signing.key_of(NEW)
    rotating = signing.headers([new, old], "evt_hub", BODY)
    assert verifier(OLD).verify(BODY, rotating)["type"] == "notice.received"
    assert verifier(NEW).verify(BODY, rotating)["type"] == "notice.received"
    assert verifier(OLD).verify(BODY, signing.headers([old], "evt_hub", BODY))
    assert reason(verifier(OLD), BODY, signing.headers([new], "evt_hub", BODY)) == "bad_signature"


def test_a_valid_delivery_is_taken_with_its_event() -> None:
    event = verifier(NEW).verify(BODY, sign(BODY, [NEW]))
    assert event == json.loads(BODY)


def test_a_forged_body_or_event_id_is_a_bad_signature() -> None:
    headers = sign(BODY, [NEW])
    altered = BODY.replace(b"fine_issued", b"tax_due")
    assert reason(verifier(NEW), altered, headers) == "bad_signature"
    assert reason(verifier(NEW), BODY, headers | {"Webhook-Id": "evt_2"}) == "bad_signature"
    moved = headers | {"Webhook-Timestamp": str(int(time.time()) + 1)}  # a fresher time
    assert reason(verifier(NEW), BODY, moved) == "bad_signature"
    garbage = headers | {"Webhook-Signature": "v1,not-base64!! v2,abc"}
    assert reason(verifier(NEW), BODY, garbage) == "bad_signature"


def test_a_wrong_secret_is_a_bad_signature() -> None:
    assert reason(verifier(OLD), BODY, sign(BODY, [NEW])) == "bad_signature"


def test_a_replayed_delivery_is_stale() -> None:
    captured = sign(BODY, [NEW], at=time.time() - 301)
    assert reason(verifier(NEW), BODY, captured) == "stale"
    ahead = sign(BODY, [NEW], at=time.time() + 301)
    assert reason(verifier(NEW), BODY, ahead) == "stale"
    within = sign(BODY, [NEW], at=time.time() - 290)
    assert verifier(NEW).verify(BODY, within)
    assert reason(verifier(NEW, tolerance_seconds=60), BODY, within) == "stale"


def test_a_duplicate_event_id_is_handled_once_and_answered_200() -> None:
    app = verifier(NEW)
    handled: list[dict[str, Any]] = []
    app.receive(BODY, sign(BODY, [NEW]), handled.append)
    redelivered = sign(BODY, [NEW], at=time.time() + 1)  # a redelivery: same id, new time
    with pytest.raises(example.Rejected) as duplicate:
        app.receive(BODY, redelivered, handled.append)
    assert (duplicate.value.reason, duplicate.value.http_status) == ("duplicate", 200)
    assert len(handled) == 1
    app.receive(BODY, sign(BODY, [NEW], event_id="evt_2"), handled.append)
    assert len(handled) == 2


def test_an_event_whose_handling_failed_is_handled_when_redelivered() -> None:
    app = verifier(NEW)

    def broken(event: dict[str, Any]) -> None:
        raise OSError("the app's database is down")

    with pytest.raises(OSError):
        app.receive(BODY, sign(BODY, [NEW]), broken)
    handled: list[dict[str, Any]] = []
    app.receive(BODY, sign(BODY, [NEW], at=time.time() + 1), handled.append)
    assert len(handled) == 1


def test_rotated_secrets_each_verify_and_a_retired_one_does_not() -> None:
    rotating = verifier(NEW, OLD)
    assert rotating.verify(BODY, sign(BODY, [OLD]))  # sent before Ieum rotated
    assert rotating.verify(BODY, sign(BODY, [NEW]))
    assert rotating.verify(BODY, sign(BODY, [NEW, OLD]))  # during the overlap
    retired = verifier(NEW)  # the app dropped the old secret after the overlap
    assert reason(retired, BODY, sign(BODY, [OLD])) == "bad_signature"


def test_missing_headers_and_malformed_requests_are_named() -> None:
    headers = sign(BODY, [NEW])
    no_signature = {k: v for k, v in headers.items() if k != "Webhook-Signature"}
    assert reason(verifier(NEW), BODY, no_signature) == "missing_header"
    assert reason(verifier(NEW), BODY, headers | {"Webhook-Timestamp": "soon"}) == "malformed"
    assert reason(verifier(NEW), b"[1, 2]", sign(b"[1, 2]", [NEW])) == "malformed"
    assert reason(verifier(NEW), b"\xff", sign(b"\xff", [NEW])) == "malformed"
    with pytest.raises(ValueError, match="base64"):
        verifier("whsec_not base64!")
    with pytest.raises(ValueError, match="current secret"):
        verifier()


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    handled: list[dict[str, Any]] = []

    def handle(event: dict[str, Any]) -> None:
        if event.get("fail"):
            raise RuntimeError("not now")
        handled.append(event)

    server = example.server(0, verifier(NEW, OLD), handle)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", handled
    server.shutdown()
    server.server_close()
    thread.join()


def test_the_example_server_answers_as_ieum_expects(
    receiver: tuple[str, list[dict[str, Any]]],
) -> None:
    url, handled = receiver
    failing = json.dumps({"type": "notice.received", "fail": True}).encode()
    with httpx.Client(timeout=5) as http:
        taken = http.post(url, content=BODY, headers=sign(BODY, [NEW]))
        again = http.post(url, content=BODY, headers=sign(BODY, [NEW], at=time.time() + 1))
        forged = http.post(
            url, content=BODY, headers=sign(BODY, [NEW], event_id="evt_x") | {"Webhook-Id": "evt_y"}
        )
        stale = http.post(
            url, content=BODY, headers=sign(BODY, [OLD], "evt_old", time.time() - 600)
        )
        failed = http.post(url, content=failing, headers=sign(failing, [NEW], "evt_fail"))
    assert [r.status_code for r in (taken, again, forged, stale, failed)] == [
        204,
        200,
        401,
        401,
        500,
    ]
    assert [again.text, forged.text, stale.text] == ["duplicate", "bad_signature", "stale"]
    assert handled == [json.loads(BODY)]


def test_the_example_needs_nothing_but_the_standard_library() -> None:
    tree = ast.parse(PATH.read_text())
    imported = {
        (node.module or "").split(".")[0]
        if isinstance(node, ast.ImportFrom)
        else alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported - {"__future__"} <= sys.stdlib_module_names
