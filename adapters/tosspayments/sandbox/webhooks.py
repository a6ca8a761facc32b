"""The sandbox's webhook sender: PAYMENT_STATUS_CHANGED events, signed, redelivered until
the receiver answers 200, and misbehaving on request (late, twice, never, out of order).

Each event keeps one transmission id across its redeliveries and copies; each attempt
carries its own transmission time and the signature over it.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import uuid
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

import aiohttp

from adapters.tosspayments import wire

ATTEMPTS = 8  # the first delivery and 7 redeliveries, as Toss does (on a shorter schedule)
ATTEMPT_TIMEOUT = 10.0  # seconds Toss waits for a receiver's answer
LOGGED = 10_000  # deliveries kept for GET /_sandbox/webhooks, newest last


@dataclass(frozen=True)
class Behaviour:
    """How deliveries go, read from the sandbox's config when an event is made."""

    url: str
    secret: str
    delay: float = 0.0
    retry_seconds: float = 0.2  # before the first redelivery; doubling after each
    duplicate: bool = False
    drop: bool = False
    reorder: bool = False
    reorder_hold: float = 1.0


@dataclass
class Delivery:
    transmission_id: str
    payment_key: str
    payment_status: str
    body: bytes
    behaviour: Behaviour
    state: str = "pending"  # pending, held, delivered, failed, dropped, cancelled
    answers: list[int] = field(default_factory=list)  # HTTP status per attempt, 0 if none

    def report(self) -> dict[str, Any]:
        return {
            "transmissionId": self.transmission_id,
            "paymentKey": self.payment_key,
            "paymentStatus": self.payment_status,
            "state": self.state,
            "answers": self.answers,
        }


@cache
def _tls() -> ssl.SSLContext:
    """One verified TLS context, made once: building one per delivery costs ~20 ms."""
    return ssl.create_default_context()


class Webhooks:
    def __init__(self, now: Callable[[], datetime]) -> None:
        self.now = now
        self.deliveries: deque[Delivery] = deque(maxlen=LOGGED)
        self._held: dict[str, Delivery] = {}  # an event waiting for its payment's next one
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        """One aiohttp session for every delivery, its connections kept alive. An httpx
        client (and a connection) per delivery was half the sandbox's CPU in
        bench/payments.py, more than the gateway's own work; one shared httpx client
        still was, in its connection pool's checks."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT),
                connector=aiohttp.TCPConnector(ssl=_tls()),
            )
        return self._session

    async def aclose(self) -> None:
        """Stop the deliveries under way and close the connections (the app's end)."""
        self.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def emit(self, payment: dict[str, Any], behaviour: Behaviour | None) -> None:
        """Send PAYMENT_STATUS_CHANGED for `payment` (Toss's payment object), if configured."""
        if behaviour is None:
            return
        created = self.now().astimezone(wire.KST).replace(tzinfo=None).isoformat()
        event = {"eventType": "PAYMENT_STATUS_CHANGED", "createdAt": created, "data": payment}
        delivery = Delivery(
            uuid.uuid4().hex,
            payment["paymentKey"],
            payment["status"],
            json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode(),
            behaviour,
        )
        self.deliveries.append(delivery)
        if behaviour.drop:
            delivery.state = "dropped"
        elif not behaviour.reorder:
            self._spawn(self._deliver(delivery))
        elif (earlier := self._held.pop(delivery.payment_key, None)) is not None:
            self._spawn(self._in_turn(delivery, earlier))  # the later status goes first
        else:
            delivery.state = "held"
            self._held[delivery.payment_key] = delivery
            self._spawn(self._release(delivery))

    def cancel(self) -> None:
        """Stop every delivery still under way (the receiver changed or went away)."""
        for task in self._tasks:
            task.cancel()
        for held in self._held.values():
            held.state = "cancelled"
        self._held.clear()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _in_turn(self, later: Delivery, earlier: Delivery) -> None:
        await self._deliver(later)
        await self._deliver(earlier)

    async def _release(self, held: Delivery) -> None:
        await asyncio.sleep(held.behaviour.reorder_hold)
        if self._held.get(held.payment_key) is held:  # no later event came to pass it
            del self._held[held.payment_key]
            await self._deliver(held)

    async def _deliver(self, delivery: Delivery) -> None:
        behaviour = delivery.behaviour
        delivery.state = "pending"
        try:
            await asyncio.sleep(behaviour.delay)
            client = self._http()
            for attempt in range(ATTEMPTS):
                if await self._attempt(client, delivery):
                    delivery.state = "delivered"
                    if behaviour.duplicate:
                        await self._attempt(client, delivery)
                    return
                if attempt + 1 < ATTEMPTS:
                    await asyncio.sleep(behaviour.retry_seconds * 2**attempt)
            delivery.state = "failed"
        except asyncio.CancelledError:
            delivery.state = "cancelled"
            raise

    async def _attempt(self, client: aiohttp.ClientSession, delivery: Delivery) -> bool:
        sent_at = wire.timestamp(self.now())
        headers = {
            "content-type": "application/json",
            wire.TRANSMISSION_ID: delivery.transmission_id,
            wire.TRANSMISSION_TIME: sent_at,
            wire.SIGNATURE: wire.signature(delivery.behaviour.secret, delivery.body, sent_at),
        }
        try:
            async with client.post(
                delivery.behaviour.url, data=delivery.body, headers=headers
            ) as response:
                await response.read()
        except (aiohttp.ClientError, TimeoutError):
            delivery.answers.append(0)
            return False
        delivery.answers.append(response.status)
        return response.status == 200
