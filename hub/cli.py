"""The `ieum` command."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from auth import clients, keys, store
from auth.identity import LocalAccounts
from auth.routes import JWKS_MAX_AGE
from hub import gc_tuning
from hub.core import db
from hub.core.settings import Settings, SettingsError
from hub.embedded.broker import EmbeddedBrokerError
from hub.embedded.postgres import EmbeddedPostgresError
from hub.migrate import MigrationError, migrate, status
from hub.runtime import DataDirBusy, find_services

log = logging.getLogger("ieum")
T = TypeVar("T")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = {
        name: value
        for name in ("host", "port", "log_level")
        if (value := getattr(args, name, None)) is not None
    }
    try:
        settings = Settings.from_env(**overrides)
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)-7s %(name)s %(message)s",
        )
        return int(args.run(settings, args) or 0)
    except (
        SettingsError,
        DataDirBusy,
        MigrationError,
        ValueError,
        asyncpg.UniqueViolationError,
    ) as exc:
        print(f"ieum: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, SettingsError | ValueError) else 1
    except clients.ClientError as exc:
        print(f"ieum: {exc}", file=sys.stderr)
        return 2
    except (EmbeddedPostgresError, EmbeddedBrokerError, ConnectionError, OSError) as exc:
        print(f"ieum: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ieum", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the hub (embedded servers unless configured)")
    serve.add_argument("--host", help="listen address (IEUM_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (IEUM_PORT, default 8000)")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--subgraph", metavar="DOMAIN", help="serve one domain alone")
    serve.add_argument(
        "--no-demo", action="store_true", help="no demo client and citizen (for production)"
    )
    serve.set_defaults(run=_serve)

    migrate_cmd = commands.add_parser("migrate", help="apply pending database migrations")
    migrate_cmd.add_argument(
        "--status", action="store_true", help="list applied and pending migrations, change nothing"
    )
    migrate_cmd.set_defaults(run=_migrate)

    schema = commands.add_parser("schema", help="the GraphQL schema")
    schema_commands = schema.add_subparsers(required=True, metavar="ACTION")
    print_cmd = schema_commands.add_parser("print", help="print the subgraph SDL")
    print_cmd.add_argument("--subgraph", metavar="DOMAIN", help="one domain's subgraph")
    print_cmd.set_defaults(run=_print_schema)

    clients_cmd = commands.add_parser("clients", help="OAuth clients (apps and partners)")
    clients_actions = clients_cmd.add_subparsers(required=True, metavar="ACTION")
    create = clients_actions.add_parser("create", help="register a client; prints its secret once")
    create.add_argument("--name", required=True, help="shown to citizens on the consent page")
    create.add_argument("--scopes", required=True, help="space- or comma-separated scopes")
    create.add_argument(
        "--redirect-uri", action="append", default=[], help="exact redirect URI (repeatable)"
    )
    create.add_argument("--public", action="store_true", help="an app on a phone: PKCE, no secret")
    create.add_argument("--jwks", type=Path, help="public JWK set file: private_key_jwt auth")
    create.add_argument("--json", action="store_true", help="one JSON object for scripts")
    create.set_defaults(run=_clients_create)
    list_cmd = clients_actions.add_parser("list", help="list clients")
    list_cmd.add_argument("--json", action="store_true")
    list_cmd.set_defaults(run=_clients_list)
    disable = clients_actions.add_parser("disable", help="disable a client, revoke its tokens")
    disable.add_argument("client_id")
    disable.set_defaults(run=_clients_disable)
    rotate = clients_actions.add_parser("rotate-secret", help="new secret; the old one stops")
    rotate.add_argument("client_id")
    rotate.add_argument("--json", action="store_true")
    rotate.set_defaults(run=_clients_rotate_secret)

    users = commands.add_parser("users", help="citizens' local accounts")
    users_actions = users.add_subparsers(required=True, metavar="ACTION")
    user_create = users_actions.add_parser("create", help="create a local account")
    user_create.add_argument("--username", required=True)
    user_create.add_argument("--name", required=True, help="display name")
    user_create.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    user_create.set_defaults(run=_users_create)

    ingest = commands.add_parser("ingest", help="an ingest worker: telemetry into PostgreSQL")
    ingest.add_argument("--group", default="ieum-ingest", help="consumer group id")
    ingest.add_argument("--topic", default="ieum.telemetry.v1", help="telemetry topic")
    ingest.set_defaults(run=_ingest)

    bridge = commands.add_parser("mqtt-bridge", help="forward MQTT telemetry to Kafka")
    bridge.add_argument("--mqtt-host", default="127.0.0.1")
    bridge.add_argument("--mqtt-port", type=int, default=1883)
    bridge.add_argument("--mqtt-username")
    bridge.add_argument("--mqtt-password-env", metavar="VAR", help="environment variable")
    bridge.set_defaults(run=_mqtt_bridge)

    simulate = commands.add_parser("simulate", help="a taxi fleet sending telemetry")
    simulate.add_argument("--vehicles", type=int, default=50)
    simulate.add_argument("--rate", type=float, default=1.0, help="messages/s per vehicle")
    simulate.add_argument("--duration", type=float, default=60.0, help="seconds")
    simulate.add_argument("--bad-share", type=float, default=0.01, help="share of bad messages")
    simulate.add_argument(
        "--owner", default="demo-partner", help="client that owns the simulated devices"
    )
    simulate.set_defaults(run=_simulate)

    keys_cmd = commands.add_parser("keys", help="token signing keys")
    keys_actions = keys_cmd.add_subparsers(required=True, metavar="ACTION")
    key_rotate = keys_actions.add_parser("rotate", help="add a signing key (published first)")
    key_rotate.add_argument(
        "--signs-in",
        type=float,
        default=2 * JWKS_MAX_AGE,
        metavar="SECONDS",
        help=f"publish now, sign after this long (default {2 * JWKS_MAX_AGE}: twice the "
        f"JWKS cache time; at least {JWKS_MAX_AGE} unless --emergency)",
    )
    key_rotate.add_argument(
        "--emergency",
        action="store_true",
        help="allow signing sooner (a leaked key): apps that cached the key set may refuse "
        "new tokens until their cache expires",
    )
    key_rotate.set_defaults(run=_keys_rotate)
    return parser


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from hub.serve import serve
    from schema.builder import domain_names

    serve(settings, domain_names(args.subgraph), args.subgraph, demo=not args.no_demo)
    return 0


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    with find_services(settings, "migrate") as services:
        assert services.database_url
        return asyncio.run(_migrate_async(services.database_url, settings, show=args.status))


async def _migrate_async(url: str, settings: Settings, *, show: bool) -> int:
    conn = await db.connect(url, settings)
    try:
        if show:
            for entry in await status(conn):
                when = (
                    f"applied {entry.applied_at:%Y-%m-%d %H:%M:%S %Z}"
                    if entry.applied_at
                    else "pending"
                )
                print(f"{entry.migration.file_name:40} {when}")
            return 0
        applied = await migrate(conn)
        for migration in applied:
            print(f"applied {migration.file_name}")
        if not applied:
            print("the database is up to date")
        return 0
    finally:
        await conn.close()


def _with_pool(settings: Settings, work: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    """Run `work` on a pool of the hub's database (the running hub's, or our own)."""
    with find_services(settings, "admin") as services:
        assert services.database_url

        async def run() -> T:
            pool = await db.create_pool(services.database_url, settings)
            try:
                return await work(pool)
            finally:
                await pool.close()

        return asyncio.run(run())


def _clients_create(settings: Settings, args: argparse.Namespace) -> int:
    jwks = json.loads(args.jwks.read_text()) if args.jwks else None
    new = _with_pool(
        settings,
        lambda pool: clients.create(
            pool,
            name=args.name,
            scope_names=args.scopes,
            redirect_uris=args.redirect_uri,
            public=args.public,
            jwks=jwks,
        ),
    )
    fields: dict[str, Any] = {
        "client_id": new.client_id,
        "client_secret": new.client_secret,
        "name": new.name,
        "token_endpoint_auth_method": {
            "client_secret": "client_secret_basic",
            "private_key_jwt": "private_key_jwt",
            "none": "none",
        }[new.auth_method],
        "scopes": new.scopes,
        "redirect_uris": new.redirect_uris,
        "grant_types": new.grant_types,
    }
    if args.json:
        print(json.dumps(fields))
        return 0
    for name, value in fields.items():
        if value is not None:
            print(f"{name:27} {' '.join(value) if isinstance(value, list) else value}")
    if new.client_secret:
        print("\nThe secret is shown only now: store it safely.")
    return 0


def _clients_list(settings: Settings, args: argparse.Namespace) -> int:
    rows = _with_pool(settings, store.list_clients)
    listed = [
        {
            "client_id": row["client_id"],
            "name": row["name"],
            "auth_method": row["auth_method"],
            "scopes": list(row["scopes"]),
            "redirect_uris": list(row["redirect_uris"]),
            "disabled": row["disabled_at"] is not None,
        }
        for row in rows
    ]
    if args.json:
        print(json.dumps(listed))
        return 0
    for client in listed:
        state = "disabled" if client["disabled"] else "active"
        print(
            f"{client['client_id']:24} {state:8} {client['name']}  [{' '.join(client['scopes'])}]"
        )
    return 0


def _clients_disable(settings: Settings, args: argparse.Namespace) -> int:
    if not _with_pool(settings, lambda pool: store.disable_client(pool, args.client_id)):
        print(f"ieum: no client {args.client_id!r}", file=sys.stderr)
        return 1
    print(f"disabled {args.client_id}; its tokens are revoked")
    return 0


def _clients_rotate_secret(settings: Settings, args: argparse.Namespace) -> int:
    secret = _with_pool(settings, lambda pool: clients.rotate_secret(pool, args.client_id))
    if args.json:
        print(json.dumps({"client_id": args.client_id, "client_secret": secret}))
    else:
        print(f"client_secret {secret}\nThe old secret no longer works.")
    return 0


def _users_create(settings: Settings, args: argparse.Namespace) -> int:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Password again: "):
            print("ieum: the passwords differ", file=sys.stderr)
            return 2
    citizen = _with_pool(
        settings, lambda pool: LocalAccounts(pool).create(args.username, args.name, password)
    )
    print(f"created {citizen.username} ({citizen.user_id})")
    return 0


def _ingest(settings: Settings, args: argparse.Namespace) -> int:
    from hub.ingest import IngestWorker

    with find_services(settings, "ingest", need_broker=True) as services:
        assert services.database_url and services.kafka_bootstrap
        worker = IngestWorker(
            settings,
            services.database_url,
            services.kafka_bootstrap,
            group_id=args.group,
            topic=args.topic,
        )

        async def run() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            print(f"ingesting from {services.kafka_bootstrap} (group {args.group}); Ctrl-C stops")
            await worker.run(stop)

        gc_tuning.settle_after_startup()
        asyncio.run(run())
    return 0


def _mqtt_bridge(settings: Settings, args: argparse.Namespace) -> int:
    import os

    from adapters.mqtt_bridge import MqttBridge, MqttSettings
    from hub.ingest import ensure_topics

    mqtt = MqttSettings(
        host=args.mqtt_host,
        port=args.mqtt_port,
        username=args.mqtt_username,
        password=os.environ.get(args.mqtt_password_env) if args.mqtt_password_env else None,
    )
    with find_services(settings, "mqtt-bridge", need_database=False, need_broker=True) as found:
        assert found.kafka_bootstrap
        bridge = MqttBridge(mqtt, found.kafka_bootstrap)

        async def run() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            await ensure_topics(found.kafka_bootstrap or "", settings.telemetry_partitions)
            print(f"bridging mqtt://{mqtt.host}:{mqtt.port}/ieum/telemetry/+ to Kafka")
            await bridge.run(stop)

        asyncio.run(run())
    print(f"forwarded {bridge.forwarded}, rejected {bridge.rejected}")
    return 0


def _simulate(settings: Settings, args: argparse.Namespace) -> int:
    from hub import simulate
    from hub.ingest import ensure_topics

    vehicles = simulate.fleet(args.vehicles)
    with find_services(settings, "simulate", need_broker=True) as services:
        assert services.database_url and services.kafka_bootstrap

        async def run() -> int:
            pool = await db.create_pool(services.database_url, settings)
            try:
                await simulate.register(pool, args.owner, vehicles)
            finally:
                await pool.close()
            await ensure_topics(services.kafka_bootstrap, settings.telemetry_partitions)
            return await simulate.run(
                services.kafka_bootstrap, vehicles, args.rate, args.duration, args.bad_share
            )

        sent = asyncio.run(run())
    print(f"sent {sent} messages from {len(vehicles)} vehicles")
    return 0


def _keys_rotate(settings: Settings, args: argparse.Namespace) -> int:
    if args.signs_in < JWKS_MAX_AGE and not args.emergency:
        raise ValueError(
            f"--signs-in {args.signs_in:g} is shorter than the {JWKS_MAX_AGE} s apps may "
            "cache the key set: their checks would refuse the new key's tokens (add "
            "--emergency if that is the point)"
        )
    key = _with_pool(settings, lambda pool: keys.add(pool, timedelta(seconds=args.signs_in)))
    print(f"added key {key.kid}: published now, signs from {key.signs_from:%Y-%m-%d %H:%M:%S %Z}")
    return 0


def _print_schema(settings: Settings, args: argparse.Namespace) -> int:
    from schema.builder import build_schema, domain_names

    print(build_schema(domain_names(args.subgraph)).as_str())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
