"""Who owns a data directory, and where the servers its owner started are listening.

The process holding the lock on `<data_dir>/hub.lock` owns the directory: it starts and
stops the embedded PostgreSQL and broker (unless settings point elsewhere) and publishes
their addresses in `<data_dir>/hub.json`. Any other `ieum` command that finds the lock
taken uses those addresses, so `ieum migrate` beside a running `ieum serve` needs no flags.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from hub.core.servers import Servers
from hub.core.settings import Settings
from hub.embedded import broker, postgres, s3store
from hub.embedded.ports import free_port

log = logging.getLogger(__name__)


class DataDirBusy(RuntimeError):
    """Another process owns the data directory in a way that excludes this command."""


@dataclass(frozen=True)
class Owner:
    """What the owning process publishes in hub.json."""

    pid: int
    command: str
    database_url: str | None
    kafka_bootstrap: str | None
    database_label: str
    broker_label: str
    broker_pid: int | None = None
    graphql_url: str | None = None
    broker_storage: str | None = None
    s3_store_pid: int | None = None


def describe_url(url: str) -> str:
    """A database URL without its password, for banners and logs."""
    parts = urlsplit(url)
    host = parts.hostname or "local socket"
    port = f":{parts.port}" if parts.port else ""
    return f"PostgreSQL at {host}{port}{parts.path} (IEUM_DATABASE_URL)"


@contextmanager
def own_data_dir(
    settings: Settings,
    command: str,
    *,
    need_database: bool = True,
    need_broker: bool = True,
    graphql_url: str | None = None,
) -> Iterator[Servers]:
    """Take the data directory, start the embedded servers it needs, stop them on exit."""
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        lock = stack.enter_context((data_dir / "hub.lock").open("a+"))
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = read_owner(data_dir)
            what = f"`ieum {owner.command}` (pid {owner.pid})" if owner else "another process"
            where = f" at {owner.graphql_url}" if owner and owner.graphql_url else ""
            raise DataDirBusy(
                f"{what} is already running on {data_dir}{where}. Stop it first, or set "
                "IEUM_DATA_DIR to another folder."
            ) from None
        _stop_orphans(data_dir)

        database_url, database_label = settings.database_url, ""
        if database_url:
            database_label = describe_url(database_url)
        elif need_database:
            # Not the hub's own port, which it binds only later.
            pg = postgres.start(data_dir / "postgres", port=free_port(avoid={settings.port}))
            stack.callback(pg.stop)
            database_url = pg.url
            database_label = (
                f"embedded PostgreSQL {postgres.version()} at 127.0.0.1:{pg.port} "
                f"(data in {pg.data_dir})"
            )

        kafka_bootstrap, broker_label, broker_pid = settings.kafka_bootstrap, "", None
        storage, store_pid = None, None
        if kafka_bootstrap:
            broker_label = f"Kafka at {kafka_bootstrap} (IEUM_KAFKA_BOOTSTRAP)"
        elif need_broker:
            storage, store_pid = _broker_storage(settings, data_dir, stack)
            # Registered after the store's stop, so the broker stops first (ExitStack: LIFO).
            embedded = broker.start(
                data_dir / "broker.log", port=free_port(avoid={settings.port}), storage=storage
            )
            stack.callback(embedded.stop)
            kafka_bootstrap, broker_pid = embedded.bootstrap, embedded.pid
            broker_label = broker_banner(kafka_bootstrap, storage)

        owner = Owner(
            pid=os.getpid(),
            command=command,
            database_url=database_url,
            kafka_bootstrap=kafka_bootstrap,
            database_label=database_label,
            broker_label=broker_label,
            broker_pid=broker_pid,
            graphql_url=graphql_url,
            broker_storage=storage.engine if storage else None,
            s3_store_pid=store_pid,
        )
        state = data_dir / "hub.json"
        state.write_text(json.dumps(asdict(owner), indent=2))
        stack.callback(state.unlink, missing_ok=True)
        yield Servers(database_url, kafka_bootstrap, database_label, broker_label)


def _broker_storage(
    settings: Settings, data_dir: Path, stack: ExitStack
) -> tuple[broker.Storage, int | None]:
    """IEUM_BROKER_STORAGE as a Tansu storage; for `s3`, start the local S3 store it needs
    (stopped by `stack` after the broker) and return its pid too."""
    if settings.broker_storage == "memory":
        return broker.MEMORY, None
    if settings.broker_storage != "s3":
        return broker.operator_s3(settings.broker_storage), None
    try:
        store = s3store.start(data_dir / "broker-s3", data_dir / "broker-s3.log")
    except s3store.EmbeddedS3StoreError as exc:  # `ieum` reports broker errors without a trace
        raise broker.EmbeddedBrokerError(str(exc)) from exc
    stack.callback(store.stop)
    return broker.local_s3(store), store.pid


def broker_banner(bootstrap: str, storage: broker.Storage) -> str:
    """What the banner and hub.json say: where topics are, and what a crash costs."""
    head = f"embedded {broker.version()} at {bootstrap}: {storage.description}."
    if storage.durable:
        return (
            f"{head} Acknowledged messages survive a broker crash and restart"
            " (IEUM_BROKER_STORAGE; docs/operating.md)"
        )
    return (
        f"{head} A stop drains ingest first; a broker crash loses what ingest had not"
        " stored (IEUM_BROKER_STORAGE=s3 keeps it; docs/operating.md)"
    )


@contextmanager
def find_servers(
    settings: Settings, command: str, *, need_database: bool = True, need_broker: bool = False
) -> Iterator[Servers]:
    """For commands beside `ieum serve`: its servers if it runs, else our own for a while."""
    if (settings.database_url or not need_database) and (
        settings.kafka_bootstrap or not need_broker
    ):
        yield Servers(settings.database_url, settings.kafka_bootstrap)
        return
    stack = ExitStack()
    try:
        servers = stack.enter_context(
            own_data_dir(settings, command, need_database=need_database, need_broker=need_broker)
        )
    except DataDirBusy:
        owner = read_owner(settings.data_dir.resolve())
        if owner is None:
            raise
        servers = Servers(
            settings.database_url or owner.database_url,
            settings.kafka_bootstrap or owner.kafka_bootstrap,
            owner.database_label,
            owner.broker_label,
        )
        _require(servers, owner, need_database=need_database, need_broker=need_broker)
    with stack:
        yield servers


def _require(servers: Servers, owner: Owner, *, need_database: bool, need_broker: bool) -> None:
    if need_database and not servers.database_url:
        raise DataDirBusy(f"`ieum {owner.command}` (pid {owner.pid}) runs without a database")
    if need_broker and not servers.kafka_bootstrap:
        raise DataDirBusy(f"`ieum {owner.command}` (pid {owner.pid}) runs without a broker")


def read_owner(data_dir: Path) -> Owner | None:
    try:
        return Owner(**json.loads((data_dir / "hub.json").read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def _stop_orphans(data_dir: Path) -> None:
    """We hold the lock, so whatever a previous owner left running is an orphan."""
    stale = read_owner(data_dir)
    if stale and stale.broker_pid:
        broker.stop_orphan(stale.broker_pid)
    if stale and stale.s3_store_pid:  # after the broker that wrote to it
        s3store.stop_orphan(stale.s3_store_pid)
    postgres.stop_orphan(data_dir / "postgres")
