"""Produce throughput of the embedded broker with memory storage and with s3 storage.

    .venv/bin/python bench/broker_storage.py [--messages 20000] [--size 1400]

For each storage, starts Tansu the way `ieum serve` does (for s3: the local LocalBucket
store under a temporary folder first), creates a topic of 4 partitions, and sends the
messages from one aiokafka producer with acks=all (as the hub's producers), timing from the
first send until the broker acknowledged the last. Prints msg/s and MB/s for both and the
ratio, which is what choosing IEUM_BROKER_STORAGE=s3 costs. The producer is Python and
shares the machine with the broker (and the store), so the memory figure is client-bound.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from hub.embedded import broker, s3store

PARTITIONS = 4


async def produce(bootstrap: str, count: int, size: int) -> float:
    """Seconds to send `count` messages of `size` bytes and have every one acknowledged."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic("bench", PARTITIONS, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    pad = b"x" * max(0, size - 16)
    try:
        await (await producer.send("bench", b"warm-up"))
        start = time.perf_counter()
        sent = [
            await producer.send("bench", f"{i:015d} ".encode() + pad, key=str(i).encode())
            for i in range(count)
        ]
        await asyncio.gather(*sent)
        return time.perf_counter() - start
    finally:
        await producer.stop()


def run(storage_name: str, folder: Path, count: int, size: int) -> float:
    store = None
    storage = broker.MEMORY
    if storage_name == "s3":
        store = s3store.start(folder / "broker-s3", folder / "broker-s3.log")
        storage = broker.local_s3(store)
    tansu = broker.start(folder / "broker.log", storage=storage)
    try:
        seconds = asyncio.run(produce(tansu.bootstrap, count, size))
    finally:
        tansu.stop()
        if store is not None:
            store.stop()
    rate = count / seconds
    print(
        f"{storage_name:>6}: {count} messages of {size} B in {seconds:.2f} s = "
        f"{rate:,.0f} msg/s, {rate * size / 1e6:.1f} MB/s"
    )
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=1400, help="bytes per message")
    args = parser.parse_args()
    rates = {}
    for name in ("memory", "s3"):
        with tempfile.TemporaryDirectory(prefix=f"ieum-bench-{name}-") as tmp:
            rates[name] = run(name, Path(tmp), args.messages, args.size)
    print(f" ratio: s3 storage produces at {rates['s3'] / rates['memory']:.2f}x memory's rate")


if __name__ == "__main__":
    main()
