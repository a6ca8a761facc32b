"""Adapters connected on first use, and their in-process sandboxes, when callers are
cancelled: a GraphQL field whose sibling failed, a request past its time budget."""

from __future__ import annotations

import asyncio

import pytest

from adapters import registry
from adapters.connections import Connections
from adapters.sandbox.server import RunningSandbox, running

SANDBOXED = "tago"  # any adapter with a sandbox and no settings in the test environment


def _serving_tasks() -> list[asyncio.Task[object]]:
    return [
        task
        for task in asyncio.all_tasks()
        if not task.done() and "Server.serve" in task.get_coro().__qualname__  # type: ignore[union-attr]
    ]


@pytest.mark.parametrize("ticks", [0, 1, 2, 5, 10, 20])
async def test_a_sandbox_cancelled_while_starting_stops_its_server(ticks: int) -> None:
    """Left running, its server kept a socket the loop watched after it was closed."""
    sandbox = registry.get(SANDBOXED).sandbox
    assert sandbox is not None

    async def start() -> None:
        async with running(sandbox):
            await asyncio.sleep(60)

    starting = asyncio.create_task(start())
    for _ in range(ticks):
        await asyncio.sleep(0)
    starting.cancel()
    await asyncio.gather(starting, return_exceptions=True)
    assert _serving_tasks() == []


async def test_a_caller_cancelled_mid_build_leaves_the_adapter_built_for_the_next() -> None:
    started: list[RunningSandbox] = []

    async def record(sandbox: RunningSandbox) -> None:
        started.append(sandbox)

    connections = Connections("tests", sandbox=True, on_sandbox=record)
    try:
        first = asyncio.create_task(connections.get(SANDBOXED))
        await asyncio.sleep(0.005)  # inside the sandbox's start
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        adapter = await asyncio.wait_for(connections.get(SANDBOXED), 10)
        assert await connections.get(SANDBOXED) is adapter
        assert len(started) == 1  # one sandbox, not one per caller
    finally:
        await connections.aclose()
    assert _serving_tasks() == []
