"""The `ieum` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from hub import db
from hub.embedded.broker import EmbeddedBrokerError
from hub.embedded.postgres import EmbeddedPostgresError
from hub.migrate import MigrationError, migrate, status
from hub.runtime import DataDirBusy, find_services
from hub.settings import Settings, SettingsError

log = logging.getLogger("ieum")


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
    except (SettingsError, DataDirBusy, MigrationError, ValueError) as exc:
        print(f"ieum: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, SettingsError | ValueError) else 1
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
    return parser


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from hub.serve import serve
    from schema.builder import domain_names

    serve(settings, domain_names(args.subgraph), args.subgraph)
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


def _print_schema(settings: Settings, args: argparse.Namespace) -> int:
    from schema.builder import build_schema, domain_names

    print(build_schema(domain_names(args.subgraph)).as_str())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
