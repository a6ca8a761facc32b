"""A Mosquitto of our own on a loopback port, for tests and benchmarks of the bridge.

The machine's Mosquitto, if any, runs with the defaults, and those lose data for a bridge
that is away: `max_queued_messages 1000` drops QoS 1 messages beyond a thousand per
session (a bridge killed for a few seconds at 1,000 msg/s is past that). This one queues
without that limit, as docs/operating.md tells operators to configure theirs.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CONFIG = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
max_queued_bytes 0
"""


def binary() -> str | None:
    """Mosquitto's path, also where Debian puts it (/usr/sbin, not on every PATH)."""
    found = shutil.which("mosquitto")
    if found is None and Path("/usr/sbin/mosquitto").exists():
        found = "/usr/sbin/mosquitto"
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running(start_timeout: float = 10.0) -> Iterator[tuple[str, int]]:
    """(host, port) of a fresh Mosquitto, stopped afterwards."""
    path = binary()
    if path is None:
        raise FileNotFoundError("mosquitto is not installed (Debian: apt-get install mosquitto)")
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "mosquitto.conf"
        config.write_text(CONFIG.format(port=port))
        log = (Path(tmp) / "mosquitto.log").open("wb")
        process = subprocess.Popen([path, "-c", str(config)], stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            "mosquitto did not start: " + (Path(tmp) / "mosquitto.log").read_text()
                        ) from None
                    time.sleep(0.05)
            yield "127.0.0.1", port
        finally:
            process.terminate()
            process.wait(10)
            log.close()
