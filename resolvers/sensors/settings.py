"""The sensors section of the hub's settings (same flat `IEUM_*` names as before)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SensorsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IEUM_", frozen=True, extra="ignore")

    ingest: bool = Field(
        default=True, description="Run an ingest worker inside `ieum serve` (single process)."
    )
    telemetry_topic: str = Field(
        default="ieum.telemetry.v1",
        pattern=r"^[A-Za-z0-9._-]{1,200}$",
        description="Topic the device messages arrive on; its dead-letter and live topics"
        " are named after it.",
    )
    telemetry_partitions: int = Field(
        default=4, ge=1, le=256, description="Partitions of ieum.telemetry.v1 when created."
    )
    raw_retention_days: int = Field(
        default=30, ge=9, description="Days raw readings are kept; rollups are kept longer."
    )
    k_anonymity: int = Field(
        default=3, ge=1, le=16, description="Distinct vehicles a cell needs before it is shown."
    )
    aggregate_cache_seconds: float = Field(
        default=2.0,
        ge=0,
        le=300,
        description="How long an aggregate answer is handed out again; 0 turns it off.",
    )
    rollup_memory_mb: int = Field(
        default=256,
        ge=0,
        description="Memory for sensor rollups a hub keeps to aggregate without"
        " PostgreSQL (resolvers/sensors/rollup_cache.py); 0 aggregates every query in SQL.",
    )
    station_poll_seconds: float = Field(
        default=900,
        ge=10,
        le=3600,
        description="How often fixed air-quality stations are read from their adapters"
        " (AirKorea publishes hourly values 15-30 minutes after the hour).",
    )
    ingest_drain_seconds: float = Field(
        default=10,
        ge=0,
        le=300,
        description="On a clean stop, how long an ingest worker goes on reading what the"
        " broker already holds (up to each partition's end) before it stops.",
    )
    ingest_write_timeout_seconds: float = Field(
        default=60,
        gt=0,
        description="Time limit for writing one batch to PostgreSQL (also its"
        " statement_timeout); past it the connection is dropped and the batch retried.",
    )
