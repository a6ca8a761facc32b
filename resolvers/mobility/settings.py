"""The mobility section of the hub's settings (`IEUM_MOBILITY_*`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

CRASH_POINTS = ("after_payment",)


class MobilitySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IEUM_MOBILITY_", frozen=True, extra="ignore")

    timetable_adapter: str = Field(
        default="tago", description="Adapter (kind train_timetable) of train timetables."
    )
    booking_adapter: str = Field(
        default="railbooking", description="Adapter (kind rail_booking) of the rail operator."
    )
    routes_adapter: str = Field(
        default="odsay", description="Adapter (kind local_routes) of walk, bus and subway paths."
    )
    sandbox: bool = Field(
        default=True,
        description="When an adapter's own settings are missing, run its sandbox inside the"
        " hub (demo mode). Set false in production so a missing setting is an error.",
    )
    in_serve: bool = Field(default=True, description="Run the booking worker inside `ieum serve`.")
    journey_budget_seconds: float = Field(
        default=2.5,
        gt=0,
        le=10,
        description="Time a journey search may spend on upstream calls; what has not"
        " answered by then is left out and listed as missing.",
    )
    station_candidates: int = Field(
        default=3,
        ge=1,
        le=6,
        description="Stations considered near each end of a journey; twice as many when"
        " the nearest make no itinerary.",
    )
    station_radius_km: float = Field(
        default=40, gt=0, le=100, description="How far from an end a station may be."
    )
    boarding_minutes: int = Field(
        default=10,
        ge=0,
        le=60,
        description="Minimum time between reaching a station and the train's departure.",
    )
    alighting_minutes: int = Field(
        default=5,
        ge=0,
        le=60,
        description="Minimum time between the train's arrival and the next leg.",
    )
    itineraries: int = Field(
        default=5, ge=1, le=20, description="Itineraries a journey search returns at most."
    )
    timetable_cache_seconds: float = Field(
        default=600, ge=0, description="How long a day's trains between two stations are kept."
    )
    routes_cache_seconds: float = Field(
        default=300, ge=0, description="How long a local path between two points is kept."
    )
    seats_cache_seconds: float = Field(
        default=5,
        ge=0,
        description="How long a train's seat availability is kept (bookings always re-check).",
    )
    payments_district: str = Field(
        default="11110",
        pattern=r"^[0-9]{5}$",
        description="The district whose accounts book ticket sales collected through the"
        " hub (the city running it).",
    )
    sync_seconds: float = Field(
        default=2,
        gt=0,
        description="How often the booking worker finishes bookings a request could not"
        " (lost answers, crashes, lapsed holds).",
    )
    holding_stale_seconds: float = Field(
        default=30,
        gt=0,
        description="A hold or confirm still unanswered after this long is presumed lost"
        " and looked up by the worker.",
    )
    train_check_seconds: float = Field(
        default=300,
        gt=0,
        description="How often the booking worker asks the operator about ticketed trains"
        " leaving soon: a delay is stored, a cancelled train's ticket refunded in full.",
    )
    train_check_hours: float = Field(
        default=36, gt=0, le=24 * 31, description="How far ahead of departure a train is checked."
    )
    crash_point: str | None = Field(
        default=None,
        description=f"Fault drills only: die at one of {', '.join(CRASH_POINTS)}.",
    )
