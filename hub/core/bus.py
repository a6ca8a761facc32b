"""The hub's connection to the Kafka-protocol broker (the event bus)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError


class EventBus:
    """One producer per process, started in the app's lifespan and shared by all requests."""

    def __init__(self, bootstrap: str, *, timeout: float) -> None:
        self.bootstrap = bootstrap
        self.timeout = timeout
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            # Idempotent producing needs InitProducerId, which Tansu does not implement;
            # consumers deduplicate by key instead.
            acks="all",
            request_timeout_ms=int(timeout * 1000),
        )

    async def start(self) -> None:
        try:
            await asyncio.wait_for(self.producer.start(), self.timeout)
        except (KafkaError, OSError, TimeoutError) as exc:
            await self.producer.stop()
            raise ConnectionError(f"cannot reach the broker at {self.bootstrap}: {exc}") from exc

    async def stop(self) -> None:
        await self.producer.stop()

    async def check(self) -> None:
        """Raise if the broker does not answer a metadata request in time."""
        try:
            await asyncio.wait_for(self.producer.client.fetch_all_metadata(), self.timeout)
        except (KafkaError, OSError, TimeoutError) as exc:
            raise ConnectionError(f"broker at {self.bootstrap} does not answer ({exc!r})") from exc
