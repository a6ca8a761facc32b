"""Free loopback ports for the servers the hub starts."""

from __future__ import annotations

import socket
import time
from collections.abc import Collection


def free_port(avoid: Collection[int] = ()) -> int:
    """A port on 127.0.0.1 that nothing listens on right now, and none of `avoid` (a port
    the hub will listen on itself, not yet bound)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in avoid:
            return port


def wait_for_port(port: int, timeout: float) -> bool:
    """Wait until something accepts connections on 127.0.0.1:`port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False
