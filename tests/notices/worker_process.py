"""The notices worker as a process of its own, for crash drills: what `ieum worker notices`
runs, on the database given, without a broker (no event sources), until SIGTERM.

    python -m tests.notices.worker_process postgresql://…
"""

from __future__ import annotations

import asyncio
import signal
import sys

from hub.core.servers import Servers
from hub.core.settings import Settings
from schema.notices.runtime import run_worker


async def main(database_url: str) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("worker started", flush=True)
    await run_worker(Settings.from_env(), Servers(database_url, None), stop)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
