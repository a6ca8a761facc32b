"""`ieum adapters list`, `ieum adapters check NAME` and `ieum sandbox NAME [--port P]`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from adapters import registry
from adapters.errors import AdapterError, UpstreamError
from adapters.sandbox import catalog, server


def register(commands: Any) -> None:
    """Add the commands to `ieum`'s subparsers; each sets `run(settings, args) -> int`."""
    adapters = commands.add_parser("adapters", help="installed adapter plugins")
    actions = adapters.add_subparsers(required=True, metavar="ACTION")
    list_cmd = actions.add_parser("list", help="installed adapters and their configuration")
    list_cmd.set_defaults(run=_list)
    check_cmd = actions.add_parser("check", help="call an adapter's health check")
    check_cmd.add_argument("name", metavar="NAME")
    check_cmd.set_defaults(run=_check)

    sandbox = commands.add_parser("sandbox", help="serve an outside system's emulator")
    sandbox.add_argument("name", metavar="NAME")
    sandbox.add_argument("--host", dest="sandbox_host", default="127.0.0.1")
    sandbox.add_argument("--port", dest="sandbox_port", type=int, default=0)
    sandbox.set_defaults(run=_sandbox)


def _list(settings: object, args: argparse.Namespace) -> int:
    try:
        statuses = registry.status()
    except AdapterError as exc:
        return _fail(exc)
    if not statuses:
        print(f"no adapters installed (entry-point group {registry.GROUP})")
    for entry in statuses:
        state = "configured" if entry.configured else f"not configured: {entry.reason}"
        print(f"{entry.name:16} {entry.kind.value:22} {entry.distribution:28} {state}")
    return 0


def _check(settings: object, args: argparse.Namespace) -> int:
    try:
        adapter = registry.get(args.name)
        asyncio.run(registry.check(args.name))
    except AdapterError as exc:
        return _fail(exc)
    except ValidationError as exc:
        return _fail(f"{args.name} is not configured: {registry.describe_invalid(adapter, exc)}")
    except UpstreamError as exc:
        return _fail(f"{args.name} health check failed: {exc}")
    print(f"{args.name}: healthy")
    return 0


def _sandbox(settings: object, args: argparse.Namespace) -> int:
    try:
        sandbox = catalog.find(args.name)
        adapter = catalog.adapter_of(sandbox)
    except AdapterError as exc:
        return _fail(exc)

    def ready(url: str) -> None:
        print(f"sandbox {sandbox.name} ({sandbox.summary}) on {url}")
        print(f"inject faults: POST {url}/_faults with a JSON plan; DELETE it to clear")
        prefix = adapter.env_prefix if adapter else ""
        for field, value in sandbox.configure(url).items():
            print(f"{prefix}{field.upper()}={value}")
        sys.stdout.flush()

    server.serve(sandbox, args.sandbox_host, args.sandbox_port, ready)
    return 0


def _fail(error: object) -> int:
    print(f"ieum: {error}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """These commands alone, for environments where `ieum` is not wired: python -m adapters.cli."""
    parser = argparse.ArgumentParser(prog="ieum")
    register(parser.add_subparsers(required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    return int(args.run(None, args))


if __name__ == "__main__":
    sys.exit(main())
