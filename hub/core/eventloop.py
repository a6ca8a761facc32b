"""The event loop of the hub's long-running processes (serve, its HTTP processes, workers,
ingest): uvloop, as uvicorn itself picks when it runs the loop (`uvicorn[standard]`
installs it). Our commands start the loop themselves, so without this they ran on
asyncio's own, whose Python-level transports and scheduling cost each request more CPU.
`IEUM_EVENT_LOOP=asyncio` keeps asyncio's loop (to debug with its tools, or where uvloop
does not build, such as Windows)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on uvloop when it is installed and not turned off."""
    if os.environ.get("IEUM_EVENT_LOOP", "uvloop").strip().lower() != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(main)
    return asyncio.run(main)
