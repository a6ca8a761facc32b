"""The `ieum` command."""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg

from adapters import cli as adapters_cli
from adapters.errors import AdapterError
from auth import cli as auth_cli
from auth import clients
from hub import domains
from hub.core import db, eventloop
from hub.core.domain import Command, Domain
from hub.core.settings import Settings, SettingsError
from hub.embedded.broker import EmbeddedBrokerError
from hub.embedded.postgres import EmbeddedPostgresError
from hub.migrate import MigrationError, migrate, status
from hub.runtime import DataDirBusy, find_servers

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
    except (
        AdapterError,
        EmbeddedPostgresError,
        EmbeddedBrokerError,
        ConnectionError,
        OSError,
    ) as exc:
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
    print_cmd = schema_commands.add_parser(
        "print", help="print the subgraph SDL (for gateways) or, with --api, what apps see"
    )
    print_cmd.add_argument("--subgraph", metavar="DOMAIN", help="one domain's subgraph")
    print_cmd.add_argument(
        "--api",
        action="store_true",
        help="the API schema: no federation types or directives, scopes in descriptions "
        "(loads in plain graphql-js / graphql-core)",
    )
    print_cmd.set_defaults(run=_print_schema)

    workers = sorted(w.name for d in domains.installed().values() for w in d.workers)
    worker = commands.add_parser(
        "worker", help="run one domain worker alone, beside `ieum serve` or on another machine"
    )
    worker.add_argument("name", choices=workers, metavar="NAME", help=", ".join(workers))
    worker.set_defaults(run=_worker)

    auth_cli.add_commands(commands, _with_pool)
    adapters_cli.register(commands)
    for domain in domains.installed().values():
        _add_domain_commands(commands, domain)
    return parser


def _add_domain_commands(commands: argparse._SubParsersAction[Any], domain: Domain) -> None:
    """`ieum <domain> <action>` for each of the domain's commands, and `ieum <action>`
    for those that had that name before domains declared their own."""
    if not domain.commands:
        return
    group = commands.add_parser(domain.name, help=f"{domain.name}: {domain.description}")
    actions = group.add_subparsers(required=True, metavar="ACTION")
    for command in domain.commands:
        parsers = [actions.add_parser(command.name, help=command.help)]
        if command.top_level:
            parsers.append(commands.add_parser(command.name, help=command.help))
        for parser in parsers:
            command.arguments(parser)
            parser.set_defaults(run=functools.partial(_run_command, command))


def _run_command(command: Command, settings: Settings, args: argparse.Namespace) -> int:
    with find_servers(
        settings,
        command.name,
        need_database=command.needs_database,
        need_broker=command.needs_broker,
    ) as servers:
        return command.run(settings, servers, args)


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    """A domain's worker in this process until Ctrl-C or SIGTERM (then it stops cleanly)."""
    found = {w.name: w for d in domains.installed().values() for w in d.workers}[args.name]
    with find_servers(
        settings, f"worker {args.name}", need_database=True, need_broker=True
    ) as servers:

        async def run() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            print(f"worker {args.name}: {found.help}; Ctrl-C stops", flush=True)
            await found.run(settings, servers, stop)

        eventloop.run(run())
    return 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from hub.serve import serve

    serve(settings, args.subgraph, demo=not args.no_demo)
    return 0


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    with find_servers(settings, "migrate") as servers:
        assert servers.database_url
        return asyncio.run(_migrate_async(servers.database_url, settings, show=args.status))


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
    with find_servers(settings, "admin") as servers:

        async def run() -> T:
            pool = await db.create_pool(servers.database, settings)
            try:
                return await work(pool)
            finally:
                await pool.close()

        return asyncio.run(run())


def _print_schema(settings: Settings, args: argparse.Namespace) -> int:
    from schema.builder import build_schema
    from schema.public import api_sdl

    sdl = build_schema(domains.select(args.subgraph)).as_str()
    print(api_sdl(sdl) if args.api else sdl, end="" if args.api else "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
