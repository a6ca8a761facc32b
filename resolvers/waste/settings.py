"""The waste section of the hub's settings (`IEUM_WASTE_*`)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class WasteSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IEUM_WASTE_", frozen=True, extra="ignore")

    scan_max_distance_m: float = Field(
        default=150,
        gt=0,
        description="A scan farther than this from the bin's site is flagged SCAN_TOO_FAR.",
    )
    open_min_businesses: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Open daily volumes (District.wasteVolumes, the open RFID-format export)"
        " show the hub's collections of a district's day only when at least this many"
        " businesses make them, so that no one business's waste is published; city staff"
        " see every day.",
    )
    rfid_adapter: str = Field(
        default="rfidwaste",
        description="Adapter of the national RFID volume-rate system (apartment volumes).",
    )
    payment_sync_seconds: float = Field(
        default=2,
        gt=0,
        le=300,
        description="How often pickups waiting on a payment are checked against payments.",
    )
    tag_secret: SecretStr | None = Field(
        default=None,
        min_length=32,
        description="Seals the tag keys in the database (QR signing keys, NFC master keys): "
        "32 or more random characters, the same on every hub process. Unset: one is made and "
        "kept in IEUM_DATA_DIR/waste-tag-secret (a single machine only).",
    )
