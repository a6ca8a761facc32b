"""Check Ieum's notice deliveries in your app: copy this file (Python 3.11+, standard
library only).

Ieum POSTs each notice to your webhook signed the Standard Webhooks way (docs/notices.md):

    webhook-id          the event id, the same on every redelivery
    webhook-timestamp   unix seconds of this attempt
    webhook-signature   "v1,<base64 HMAC-SHA256(key, '{id}.{timestamp}.{body}')>", one per
                        valid secret, space-separated (two while a secret is rotated)

The key is the base64 after `whsec_` in the secret Ieum showed you. A request is taken if
one of its signatures matches one of your secrets (keep both during a rotation), its
timestamp is within 5 minutes of your clock, and its event id is new to you:

    verifier = Verifier(["whsec_…"], MemoryEvents())
    try:
        event = verifier.receive(body, headers, handle=show_in_inbox)
    except Rejected as refused:
        answer(refused.http_status)  # 200 for a duplicate, so Ieum stops sending it

`receive` claims the event id before handling and gives it back if handling fails, so a
redelivery is handled once your app can. In production, make `EventStore` a table whose
primary key is the event id (claim = INSERT … ON CONFLICT DO NOTHING), ideally in the
transaction that stores the notice. Try it as a server:

    IEUM_WEBHOOK_SECRETS="whsec_… whsec_…" python notices_webhook_verifier.py 8080
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Lock
from typing import Any, Protocol

TOLERANCE_SECONDS = 5 * 60
SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")

Event = dict[str, Any]


class Rejected(Exception):
    """Not a delivery to take. `reason` says why:

    missing_header  a webhook-* header is absent
    malformed       the timestamp is not unix seconds, or the body not a JSON object
    bad_signature   no signature matches your secrets: forged, altered, or a wrong secret
    stale           signed more than the tolerance from now: a captured request replayed
    duplicate       an event id you have taken before: a redelivery, already handled
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    @property
    def http_status(self) -> int:
        """What to answer Ieum: 200 stops redeliveries of a duplicate; a 4xx is final."""
        return {"duplicate": 200, "malformed": 400}.get(self.reason, 401)


class EventStore(Protocol):
    def claim(self, event_id: str) -> bool:
        """Record the id; False if it was recorded before."""
        ...

    def release(self, event_id: str) -> None:
        """Forget an id whose handling failed, so that its redelivery is handled."""
        ...


class MemoryEvents:
    """Event ids taken by this process, the oldest forgotten past `capacity`. Ieum
    redelivers for 26 hours and a redriven dead letter keeps its id: keep ids longer."""

    def __init__(self, capacity: int = 1_000_000) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = Lock()

    def claim(self, event_id: str) -> bool:
        with self._lock:
            if event_id in self._ids:
                return False
            self._ids[event_id] = None
            if len(self._ids) > self.capacity:
                self._ids.popitem(last=False)
            return True

    def release(self, event_id: str) -> None:
        with self._lock:
            self._ids.pop(event_id, None)


def key_of(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret (the prefix may be left out)."""
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError("a webhook secret is whsec_ followed by base64") from None
    if not key:
        raise ValueError("the webhook secret is empty")
    return key


class Verifier:
    def __init__(
        self,
        secrets: Sequence[str],
        events: EventStore,
        *,
        tolerance_seconds: int = TOLERANCE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secrets:
            raise ValueError("give the current secret (and the previous one while rotating)")
        self._keys = [key_of(secret) for secret in secrets]
        self._events = events
        self._tolerance = tolerance_seconds
        self._clock = clock

    def verify(self, body: bytes, headers: Mapping[str, str]) -> Event:
        """The event, if Ieum signed this body recently with one of your secrets. Pass the
        raw body bytes exactly as received: parsed and re-encoded JSON will not match."""
        lowered = {name.lower(): value for name, value in headers.items()}
        if missing := [name for name in HEADERS if not lowered.get(name)]:
            raise Rejected("missing_header", f"no {', '.join(missing)}")
        event_id, sent_at = lowered["webhook-id"], lowered["webhook-timestamp"]
        if not (sent_at.isascii() and sent_at.isdigit()):
            raise Rejected("malformed", f"webhook-timestamp {sent_at!r} is not unix seconds")
        signed = f"{event_id}.{sent_at}.".encode() + body
        expected = [hmac.new(key, signed, hashlib.sha256).digest() for key in self._keys]
        if not any(
            hmac.compare_digest(offered, wanted)
            for offered in _signatures(lowered["webhook-signature"])
            for wanted in expected
        ):
            raise Rejected("bad_signature", "no signature matches your secrets")
        skew = self._clock() - int(sent_at)
        if abs(skew) > self._tolerance:
            raise Rejected(
                "stale", f"signed {skew:+.0f} s from now (tolerance {self._tolerance} s)"
            )
        try:
            event = json.loads(body)
        except ValueError:
            raise Rejected("malformed", "the body is not JSON") from None
        if not isinstance(event, dict):
            raise Rejected("malformed", "the body is not a JSON object")
        return event

    def receive(
        self, body: bytes, headers: Mapping[str, str], handle: Callable[[Event], None]
    ) -> Event:
        """Verify, then handle the event once per event id; Rejected("duplicate") after."""
        event = self.verify(body, headers)
        event_id = {name.lower(): value for name, value in headers.items()}["webhook-id"]
        if not self._events.claim(event_id):
            raise Rejected("duplicate", f"event {event_id} was taken before")
        try:
            handle(event)
        except BaseException:
            self._events.release(event_id)
            raise
        return event


def _signatures(header: str) -> list[bytes]:
    """The v1 signatures of the header as bytes; other versions and garbage are skipped."""
    found = []
    for entry in header.split():
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue
        try:
            found.append(base64.b64decode(encoded, validate=True))
        except binascii.Error:
            continue
    return found


def server(port: int, verifier: Verifier, handle: Callable[[Event], None]) -> ThreadingHTTPServer:
    """A receiver on 127.0.0.1:`port` (0: any free port): 204 when taken, the rejection's
    status otherwise, 500 when `handle` fails (Ieum sends it again later)."""

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            try:
                verifier.receive(body, dict(self.headers.items()), handle)
            except Rejected as refused:
                self._answer(refused.http_status, refused.reason)
            except Exception as exc:
                self._answer(500, type(exc).__name__)
            else:
                self._answer(204, "")

        def _answer(self, status: int, text: str) -> None:
            self.send_response(status)
            self.send_header("content-length", str(len(text)))
            self.end_headers()
            self.wfile.write(text.encode())

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: an app logs what it handles, not every request."""

    return ThreadingHTTPServer(("127.0.0.1", port), Receiver)


def main() -> None:
    secrets = os.environ.get("IEUM_WEBHOOK_SECRETS", "").split()
    verifier = Verifier(secrets, MemoryEvents())
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    with server(port, verifier, lambda event: print(json.dumps(event, ensure_ascii=False))) as s:
        print(f"taking Ieum's notices on http://127.0.0.1:{s.server_address[1]}/", flush=True)
        s.serve_forever()


if __name__ == "__main__":
    main()
