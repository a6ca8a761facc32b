"""The one settings object, read from `IEUM_*` environment variables once at start.

The hub's own fields live here; each domain declares a section (a `BaseSettings` of its
own, also read from `IEUM_*`), registered when the domain is installed. All of them are
read and validated together, and every bad variable is reported at once.
Every field is documented in `docs/operating.md`; keep the two in step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

from authlib.common.security import is_secure_transport
from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hub.core import cores

LogLevel = Literal["debug", "info", "warning", "error"]
S = TypeVar("S", bound=BaseSettings)

_SECTIONS: list[type[BaseSettings]] = []


def register_section(section: type[BaseSettings]) -> None:
    """Read `section` with the hub's settings from now on (the domain registry calls this)."""
    if section not in _SECTIONS:
        _SECTIONS.append(section)


class SettingsError(Exception):
    """A setting has an invalid value; the message names the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IEUM_", frozen=True, extra="ignore")
    _sections: dict[type[BaseSettings], BaseSettings] = PrivateAttr(default_factory=dict)

    # Where things live
    data_dir: Path = Field(
        default=Path(".ieum"),
        description="Folder for the embedded PostgreSQL data, broker log and runtime state.",
    )
    database_url: str | None = Field(
        default=None,
        description="PostgreSQL to use instead of the embedded one (postgresql://…).",
    )
    kafka_bootstrap: str | None = Field(
        default=None,
        description="Kafka bootstrap servers (host:port,…) instead of the embedded broker.",
    )
    broker_storage: str = Field(
        default="memory",
        description="Where the embedded broker keeps topics: memory (a crash loses what ingest "
        "had not stored), s3 (files under IEUM_DATA_DIR/broker-s3, kept across crashes) or "
        "s3://bucket/ of an S3-compatible store you run (AWS_ENDPOINT, AWS_ACCESS_KEY_ID, …).",
    )

    # HTTP server
    host: str = Field(default="127.0.0.1", description="Address the hub listens on.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port the hub listens on.")
    log_level: LogLevel = Field(default="info", description="debug, info, warning or error.")
    graphiql: bool = Field(default=True, description="Serve GraphiQL to browsers at /graphql.")
    shutdown_grace_seconds: float = Field(
        default=10.0, gt=0, description="How long in-flight requests may run on shutdown."
    )

    # OAuth 2.0
    public_url: str | None = Field(
        default=None,
        description="URL clients reach the hub at; the token issuer. Default http://HOST:PORT.",
    )
    access_token_seconds: int = Field(
        default=600, ge=60, le=3600, description="Lifetime of access tokens."
    )
    refresh_token_seconds: int = Field(
        default=30 * 24 * 3600, ge=600, description="Lifetime of refresh tokens."
    )

    # HTTP processes
    workers: int = Field(
        default_factory=cores.http_processes,
        ge=1,
        le=cores.MAX_PROCESSES,
        description="Processes answering HTTP on the hub's port; by default one per core "
        "this process may use (its CPU affinity and cgroup quota; on Linux, elsewhere 1). "
        "1: a single process.",
    )

    # GraphQL requests
    graphql_max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest request body /graphql reads; a larger one is answered 413.",
    )
    graphql_max_tokens: int = Field(
        default=15_000,
        ge=100,
        description="Most lexical tokens (comments included) a GraphQL document may have; "
        "the parser stops at the limit.",
    )
    max_query_cost: int = Field(
        default=10_000,
        ge=1,
        le=999_999_999,  # costs are counted up to 1e9, which is always refused
        description="Most a GraphQL document may cost (docs/api.md#limits); more is refused "
        "before it runs (QUERY_TOO_COSTLY).",
    )
    max_entity_representations: int = Field(
        default=1_000, ge=1, description="Most representations one request may give _entities."
    )
    max_subscriptions_per_client: int = Field(
        default=20,
        ge=1,
        description="Most subscriptions an OAuth client (or an address, without a token) holds "
        "at once in a hub process, over all its WebSockets.",
    )
    auth_kek: SecretStr | None = Field(
        default=None,
        description="Key-encryption key for token signing keys: base64 of 32 random bytes, "
        "the same for every hub process (unset: one is made in the data dir).",
    )
    auth_kek_file: Path | None = Field(
        default=None, description="A file holding the key-encryption key instead of IEUM_AUTH_KEK."
    )

    # PostgreSQL pool
    db_pool_min: int = Field(default=1, ge=0, description="Connections kept open.")
    db_pool_max: int = Field(default=10, ge=1, description="Most connections opened at once.")
    db_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Time limit for connecting, for taking a connection from the pool and for "
        "health checks.",
    )
    db_statement_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Time limit for one statement of the hub's pool (PostgreSQL's "
        "statement_timeout, and the client's own wait a second longer).",
    )

    @property
    def issuer(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    def check_issuer(self) -> None:
        """Sign-in and tokens need https, except on loopback (authlib refuses the rest with
        an error per request); say so once, at start."""
        if not is_secure_transport(self.issuer):
            raise SettingsError(
                f"invalid settings:\n  IEUM_PUBLIC_URL: the hub would issue tokens as "
                f"{self.issuer}; OAuth needs https:// (http only on loopback): set "
                "IEUM_PUBLIC_URL to the https:// address clients reach the hub at"
            )

    @property
    def audience(self) -> str:
        """The `aud` of access tokens: this hub's GraphQL API."""
        return f"{self.issuer}/graphql"

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http:// or https:// URL")
        return value or None

    @field_validator("database_url")
    @classmethod
    def _postgres_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql:// or postgres://")
        return value or None

    @field_validator("kafka_bootstrap")
    @classmethod
    def _host_ports(cls, value: str | None) -> str | None:
        if not value:
            return None
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port…], got {server.strip()!r}")
        return value

    @field_validator("broker_storage")
    @classmethod
    def _storage(cls, value: str) -> str:
        if value in ("memory", "s3"):
            return value
        if value.startswith("s3://") and value.removeprefix("s3://").split("/", 1)[0]:
            return value if value.endswith("/") else value + "/"
        raise ValueError("expected memory, s3 or s3://bucket/")

    def section(self, kind: type[S]) -> S:
        """A domain's section, as read at start (or its defaults and environment now,
        for settings made without `from_env`)."""
        found = self._sections.get(kind)
        if found is None:
            found = self._sections[kind] = kind()
        assert isinstance(found, kind)
        return found

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Read the environment, for the hub and every registered section; an override
        goes to whichever of them has that field. Raise SettingsError naming each bad
        variable."""
        problems: list[str] = []
        read: dict[type[BaseSettings], BaseSettings] = {}
        for kind in (cls, *_SECTIONS):
            mine: dict[str, Any] = {k: v for k, v in overrides.items() if k in kind.model_fields}
            try:
                read[kind] = kind(**mine)
            except ValidationError as exc:
                problems += [
                    f"IEUM_{str(e['loc'][0]).upper()}: {e['msg']} (got {e.get('input')!r})"
                    for e in exc.errors()
                ]
        unknown = set(overrides) - {f for kind in (cls, *_SECTIONS) for f in kind.model_fields}
        if unknown:
            raise TypeError(f"no such setting: {', '.join(sorted(unknown))}")
        if problems:
            raise SettingsError("invalid settings:\n  " + "\n  ".join(problems))
        settings = read.pop(cls)
        assert isinstance(settings, Settings)
        settings._sections.update(read)
        return settings
