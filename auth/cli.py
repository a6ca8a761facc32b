"""`ieum clients`, `ieum users`, `ieum keys` and `ieum audit`: OAuth clients, citizens'
accounts, token signing keys and the audit log, administered from the command line."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from auth import audit, clients, kek, keys, store
from auth.identity import LocalAccounts
from auth.routes import JWKS_MAX_AGE
from hub.core.settings import Settings

T = TypeVar("T")
# Runs work on a pool of the hub's database (the running hub's, or one the runtime starts).
WithPool = Callable[[Settings, Callable[[asyncpg.Pool], Awaitable[Any]]], Any]
_with_pool: WithPool


def add_commands(commands: argparse._SubParsersAction[Any], with_pool: WithPool) -> None:
    global _with_pool
    _with_pool = with_pool
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
    key_encrypt = keys_actions.add_parser(
        "encrypt", help="seal private keys stored plain with the KEK (IEUM_AUTH_KEK)"
    )
    key_encrypt.set_defaults(run=_keys_encrypt)

    audit_cmd = commands.add_parser("audit", help="the log of reads of citizens' personal data")
    audit_actions = audit_cmd.add_subparsers(required=True, metavar="ACTION")
    export = audit_actions.add_parser("export", help="write the log of a period, oldest first")
    moment = "a date or ISO time; KST unless it says its offset"
    export.add_argument("--since", required=True, type=_moment, help=f"from (included): {moment}")
    export.add_argument("--until", type=_moment, help=f"to (excluded; default now): {moment}")
    export.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    export.add_argument("--output", type=Path, help="file to write (default standard output)")
    export.set_defaults(run=_audit_export)
    prune = audit_actions.add_parser("prune", help="delete rows older than a date (2 years kept)")
    prune.add_argument("--before", required=True, type=_moment, help=moment)
    prune.set_defaults(run=_audit_prune)


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


def _keys_encrypt(settings: Settings, args: argparse.Namespace) -> int:
    sealed = _with_pool(settings, keys.seal_plain)
    key_encryption_key = kek.current()
    print(
        f"sealed {len(sealed)} plain key(s){': ' + ' '.join(sealed) if sealed else ''} "
        f"with KEK {key_encryption_key.kek_id} ({key_encryption_key.source})"
    )
    return 0


def _moment(text: str) -> datetime:
    """`2026-11-01` (midnight) or `2026-11-01T09:30[+09:00]`; in KST without an offset."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date or ISO time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=audit.KST)


def _audit_export(settings: Settings, args: argparse.Namespace) -> int:
    output = (
        args.output.open("w", encoding="utf-8", newline="")
        if args.output
        else contextlib.nullcontext(sys.stdout)
    )
    with output as out:
        count = _with_pool(
            settings, lambda pool: audit.export(pool, args.since, args.until, args.format, out)
        )
    print(f"exported {count} rows", file=sys.stderr)
    return 0


def _audit_prune(settings: Settings, args: argparse.Namespace) -> int:
    try:
        deleted = _with_pool(settings, lambda pool: audit.prune(pool, args.before))
    except asyncpg.InvalidParameterValueError as exc:
        print(f"ieum: {exc}", file=sys.stderr)
        return 2
    print(f"deleted {deleted} audit rows logged before {args.before:%Y-%m-%d %H:%M %Z}")
    return 0
