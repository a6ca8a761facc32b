"""Where a process finds PostgreSQL and the broker."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Servers:
    """The PostgreSQL and Kafka-protocol servers this process uses, and how to describe
    them in banners and logs. Either may be absent for a command that does not need it."""

    database_url: str | None
    kafka_bootstrap: str | None
    database_label: str = ""
    broker_label: str = ""

    @property
    def database(self) -> str:
        """The database URL, for code that cannot run without one."""
        if self.database_url is None:
            raise RuntimeError("this command was started without a database")
        return self.database_url

    @property
    def broker(self) -> str:
        """The broker's bootstrap servers, for code that cannot run without one."""
        if self.kafka_bootstrap is None:
            raise RuntimeError("this command was started without a broker")
        return self.kafka_bootstrap
