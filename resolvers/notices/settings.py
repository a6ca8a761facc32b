"""The notices section of the hub's settings (`IEUM_NOTICES_*`)."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from resolvers.sensors.devices import ACKS_TOPIC, COMMANDS_TOPIC

CRASH_POINTS = ("after_claim", "after_send")


class NoticesSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IEUM_NOTICES_", frozen=True, extra="ignore")

    in_serve: bool = Field(
        default=True,
        description="Run the delivery worker (webhooks, agency reports, event sources)"
        " inside `ieum serve`.",
    )
    day_starts_hour: int = Field(
        default=8, ge=0, le=23, description="Korean hour from which non-urgent notices go."
    )
    day_ends_hour: int = Field(
        default=21,
        ge=1,
        le=24,
        description="Korean hour from which non-urgent notices wait for the next morning.",
    )
    retry_hours: float = Field(
        default=26,
        ge=24,
        le=24 * 7,
        description="How long a webhook delivery is retried before it is dead-lettered.",
    )
    first_retry_seconds: float = Field(
        default=5, gt=0, description="Wait before the second attempt; doubles on each failure."
    )
    longest_retry_seconds: float = Field(
        default=3600, gt=0, description="Longest wait between two attempts of a delivery."
    )
    batch: int = Field(
        default=500, ge=1, le=5000, description="Deliveries one worker lane claims at once."
    )
    lanes: int = Field(
        default=4, ge=1, le=64, description="Batches one worker sends at the same time."
    )
    app_concurrency: int = Field(
        default=8, ge=1, le=1000, description="Webhook requests in flight to one app at once."
    )
    default_max_batch: int = Field(
        default=50,
        ge=1,
        le=100,
        description="Notices one webhook request carries for an app that registered without"
        " maxBatch (an app that asks for 1 gets one notice per request).",
    )
    webhook_timeout_seconds: float = Field(
        default=10,
        gt=0,
        le=60,
        description="Time limit of one webhook request, from connecting to the answer's last"
        " byte; at most a quarter of the lease.",
    )
    lease_seconds: float = Field(
        default=60,
        gt=0,
        description="A claimed delivery whose worker died is due again after this long.",
    )
    secret_overlap_hours: float = Field(
        default=24,
        ge=0,
        le=24 * 30,
        description="How long the previous webhook secret stays valid after a rotation.",
    )
    agency_adapter: str = Field(
        default="agencynotice",
        description="Adapter (kind notice_source) of the agencies' notice system.",
    )
    linking_key: SecretStr | None = Field(
        default=None,
        description="The key shared with agencies that turns a citizen's CI into the"
        " pseudonym their notices name (the same at every agency and hub process).",
    )
    events_group: str = Field(
        default="ieum-notices",
        pattern=r"^[A-Za-z0-9._-]{1,200}$",
        description="Consumer group the worker reads other domains' event topics with.",
    )
    # Messages on taxi-top displays (displays*.py)
    display_worker: bool = Field(
        default=True,
        description="Run the display targeting worker inside `ieum serve` (single process).",
    )
    display_commands_topic: str = Field(
        default=COMMANDS_TOPIC,
        pattern=r"^[A-Za-z0-9._-]{1,200}$",
        description="Topic of the commands to display units, keyed by device id.",
    )
    display_acks_topic: str = Field(
        default=ACKS_TOPIC,
        pattern=r"^[A-Za-z0-9._-]{1,200}$",
        description="Topic units acknowledge on (the MQTT bridge forwards MQTT units' acks).",
    )
    display_tick_seconds: float = Field(
        default=1.0, gt=0, le=60, description="How often the worker compares units and areas."
    )
    display_position_max_age_seconds: float = Field(
        default=120,
        gt=0,
        description="A unit whose last position is older is not sent new messages.",
    )
    display_min_units: int = Field(
        default=3,
        ge=1,
        le=16,
        description="Distinct units a cell or district needs before its coverage is shown.",
    )
    crash_point: str | None = Field(
        default=None,
        description="Fault drills only: the worker exits at this step of a delivery round"
        f" ({', '.join(CRASH_POINTS)}), to prove a restart loses nothing.",
    )

    @model_validator(mode="after")
    def _day(self) -> NoticesSettings:
        if self.day_starts_hour >= self.day_ends_hour:
            raise ValueError("IEUM_NOTICES_DAY_STARTS_HOUR must be before DAY_ENDS_HOUR")
        if self.webhook_timeout_seconds * 4 > self.lease_seconds:
            raise ValueError(
                "IEUM_NOTICES_WEBHOOK_TIMEOUT_SECONDS is at most a quarter of LEASE_SECONDS:"
                " a delivery still being sent when its lease ends is sent again"
            )
        if self.crash_point is not None and self.crash_point not in CRASH_POINTS:
            raise ValueError(f"crash_point must be one of {', '.join(CRASH_POINTS)}")
        return self
