"""The sandbox agency's sender: submissions of notices POSTed to the hub one after another,
signed, sent again until the hub takes them, and misbehaving on request.

A submission keeps its request id across attempts; each attempt is signed afresh with a
timestamp later than the one before (a retry is never byte-identical to its first try,
which is what tells it from a replay). A 2xx answer delivers it; 5xx, 408, 429 or no
answer is tried again with doubling waits; another 4xx is the hub refusing the request
itself (signature, timestamp, format), which sending it again unchanged cannot cure.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from adapters.agencynotice import wire

ATTEMPT_TIMEOUT = 10.0  # seconds the agency waits for the hub's answer
LOGGED = 100_000  # submissions kept for GET /_sandbox/submissions, newest last
WRONG_KEY = hashlib.sha256(b"not a key the agency shares with the hub").digest()
RETRIED = frozenset({408, 429})


@dataclass(frozen=True)
class Behaviour:
    """How a submission goes, read from the sandbox's config when it is made."""

    url: str
    keys: tuple[bytes, ...]
    attempts: int
    retry_seconds: float
    retry_max_seconds: float
    duplicate: bool = False  # once taken, the same notices again under a new request id
    replay: bool = False  # once taken, the very same signed request again
    bad_signature: bool = False  # signed with a key the hub does not have
    stale_seconds: float = 0.0  # timestamps this far in the past


@dataclass
class Submission:
    request_id: str
    notice_ids: list[str]
    body: bytes
    behaviour: Behaviour
    kind: str = "original"  # original, duplicate, replay
    state: str = "queued"  # queued, sending, delivered, rejected, failed, cancelled
    answers: list[int] = field(default_factory=list)  # HTTP status per attempt, 0 if none
    sent: dict[str, str] = field(default_factory=dict)  # the last attempt's headers

    def report(self) -> dict[str, Any]:
        return {
            "requestId": self.request_id,
            "noticeIds": self.notice_ids,
            "kind": self.kind,
            "state": self.state,
            "answers": self.answers,
        }


def request_id() -> str:
    return "req_" + uuid.uuid4().hex


class Sender:
    def __init__(self, agency: str) -> None:
        self.agency = agency
        self.log: deque[Submission] = deque(maxlen=LOGGED)
        self._queue: deque[Submission] = deque()
        self._task: asyncio.Task[None] | None = None

    def submit(self, submissions: list[Submission]) -> None:
        """Queue submissions behind those already waiting; they go in this order."""
        self.log.extend(submissions)
        self._queue.extend(submissions)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def cancel(self) -> None:
        """Stop sending: the hub went away or the test is over."""
        for waiting in self._queue:
            waiting.state = "cancelled"
        self._queue.clear()
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while self._queue:  # again if more came while the client was closing
            async with httpx.AsyncClient(timeout=ATTEMPT_TIMEOUT) as client:
                while self._queue:
                    submission = self._queue.popleft()
                    await self._deliver(client, submission)
                    if submission.state == "delivered":
                        await self._follow(client, submission)

    async def _deliver(self, client: httpx.AsyncClient, submission: Submission) -> None:
        submission.state = "sending"
        try:
            submission.state = await self._attempts(client, submission)
        except asyncio.CancelledError:
            submission.state = "cancelled"
            raise

    async def _attempts(self, client: httpx.AsyncClient, submission: Submission) -> str:
        """Send until taken or refused, or out of attempts; the submission's final state."""
        behaviour = submission.behaviour
        signed_at: int | None = None
        for attempt in range(behaviour.attempts):
            if attempt:
                wait = behaviour.retry_seconds * 2 ** (attempt - 1)
                await asyncio.sleep(min(wait, behaviour.retry_max_seconds))
            signed_at = await _later_than(signed_at, behaviour.stale_seconds)
            status = await self._post(client, submission, self._headers(submission, signed_at))
            if 200 <= status < 300:
                return "delivered"
            if 400 <= status < 500 and status not in RETRIED:
                return "rejected"
        return "failed"

    async def _follow(self, client: httpx.AsyncClient, taken: Submission) -> None:
        """The faults that act once a submission was taken: a replay, a duplicate."""
        behaviour = taken.behaviour
        if behaviour.replay:
            replay = Submission(
                taken.request_id, taken.notice_ids, taken.body, behaviour, kind="replay"
            )
            self.log.append(replay)
            replay.state = "sending"
            try:
                status = await self._post(client, replay, taken.sent)
            except asyncio.CancelledError:
                replay.state = "cancelled"
                raise
            replay.state = "delivered" if 200 <= status < 300 else "rejected"
        if behaviour.duplicate:
            again = Submission(
                request_id(),
                taken.notice_ids,
                taken.body,
                replace(behaviour, duplicate=False, replay=False),
                kind="duplicate",
            )
            self.log.append(again)
            await self._deliver(client, again)

    def _headers(self, submission: Submission, signed_at: int) -> dict[str, str]:
        behaviour = submission.behaviour
        keys = [WRONG_KEY] if behaviour.bad_signature else list(behaviour.keys)
        stamp = str(signed_at)
        return {
            "content-type": "application/json",
            wire.AGENCY: self.agency,
            wire.REQUEST_ID: submission.request_id,
            wire.TIMESTAMP: stamp,
            wire.SIGNATURE: wire.signatures(keys, submission.request_id, stamp, submission.body),
        }

    async def _post(
        self, client: httpx.AsyncClient, submission: Submission, headers: dict[str, str]
    ) -> int:
        submission.sent = headers
        try:
            response = await client.post(
                submission.behaviour.url, content=submission.body, headers=headers
            )
        except httpx.HTTPError:
            submission.answers.append(0)
            return 0
        submission.answers.append(response.status_code)
        return response.status_code


async def _later_than(previous: int | None, stale_seconds: float) -> int:
    """This attempt's timestamp (unix seconds, `stale_seconds` behind), after `previous`."""
    now = time.time() - stale_seconds
    if previous is not None and int(now) <= previous:
        await asyncio.sleep(previous + 1 - now)
        return previous + 1
    return int(now)
