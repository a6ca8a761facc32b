"""A collector's scan of a bin's tag at pickup: checked, stored once, and the collection
it records, in one statement.

A scan is refused when its tag does not verify (each tag error its own code), when the bin
lies outside the company's districts (OUTSIDE_COLLECTOR_DISTRICTS) or at a site the city
gave to another company of the district (ASSIGNED_TO_ANOTHER_COLLECTOR), when the bin has no
paid pickup on the scan's Korean day (PICKUP_NOT_PAID), or when that pickup was collected
by another scan (PICKUP_ALREADY_COLLECTED). A scan farther than the setting from the bin's
site is accepted, the bin being collected all the same, and flagged SCAN_TOO_FAR for the
city to look at: the truck is at the bin, only the phone's position may be off.

The phone makes the scan id, so a scan uploaded again (offline, then once more) is stored
once and answers as it did the first time, collection or refusal, with its own scan time;
refusals by the tag itself are not stored (nothing is known of the bin), and a retried
NFC tap, whose counter the first try used, finds the stored scan. One statement a scan
(SCAN) accepts an NFC read, stores the scan, collects the pickup and tells live
subscribers, all or nothing.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import asyncpg
import msgspec

from hub.core.errors import BadUserInput, IeumError
from resolvers.waste import errors, live, pickups
from resolvers.waste.collectors import Collector
from resolvers.waste.pickups import KST, Pickup
from resolvers.waste.tags import store
from resolvers.waste.tags.verify import NfcRead, NfcTap, QrTag, TagInput, VerifiedTag, Verifier

COLLECTED = "collected"
TOO_FAR = "SCAN_TOO_FAR"
EARTH_RADIUS_M = 6_371_008.8
CLOCK_SKEW = timedelta(minutes=5)  # a phone's clock ahead of ours by up to this is fine
MAX_WEIGHT_KG = Decimal(10_000)
GRAMS_10 = Decimal("0.01")  # weights are kept to 10 g, as the column holds them
# The settings of the scans' own pool (hub.core.db.create_pool). The shared pools force
# custom plans (sensors' aggregates need them), which planned the scan's statement again on
# every run, at a cost to PostgreSQL of three times its run; its plan does not depend on
# the values. In a pool of its own the statement needs no transaction to set that in.
POOL_SETTINGS = {"plan_cache_mode": "force_generic_plan"}
OUTSIDE = errors.OutsideCollectorDistricts.code
ANOTHER = errors.AssignedToAnotherCollector.code
# The whole scan in one statement. An NFC read is accepted here, with the rest or not at
# all (the tag's counter moved forward: $1 uid, $2 key, $3 counter); a QR label names its bin
# ($4). The bin's pickup that day is the one a scan collects first: waiting, then missed (a
# scan made offline that day and uploaded after the day was closed), then already
# collected; locked. The scan is decided as the module says (the distance: great-circle,
# haversine), stored once per scan id, and when it collects, its pickup goes paid |
# scheduled | missed → collected (as pickups.record_collection takes it) and live
# subscribers are told (the NOTIFY carries a live.Collection). Always one row:
# `tag_bin_id` null when the read was not accepted, `bin_id` null when the bin does not
# exist, `scan` null when the scan id was stored before.
SCAN = f"""
WITH accepted AS ({store.ACCEPT_READ}),
tag AS (
    SELECT CASE WHEN $1::text IS NULL THEN $4::uuid ELSE (SELECT bin_id FROM accepted) END
        AS bin_id
), found AS (
    SELECT b.bin_id, b.volume_litres, b.site_id, s.district_code, p.pickup_id, p.status,
           a.collector_id AS site_collector,
           2 * {EARTH_RADIUS_M}::float8 * asin(sqrt(least(1.0::float8,
               sin((radians(s.lat) - radians($11)) / 2) ^ 2
               + cos(radians($11)) * cos(radians(s.lat)) * sin(radians(s.lng - $12) / 2) ^ 2
           ))) AS distance_m
    FROM waste_bins b JOIN waste_sites s USING (site_id)
    LEFT JOIN waste_site_collectors a ON a.site_id = s.site_id
    LEFT JOIN LATERAL (
        SELECT pickup_id, status FROM waste_pickups
        WHERE bin_id = b.bin_id AND pickup_day = $5
          AND status IN ('paid', 'scheduled', 'missed', 'collected')
        ORDER BY status = 'collected', status = 'missed', collected_at DESC
        LIMIT 1 FOR UPDATE
    ) p ON true
    WHERE b.bin_id = (SELECT bin_id FROM tag)
), decided AS (
    SELECT found.*, CASE
        WHEN NOT district_code = ANY($8) THEN '{OUTSIDE}'
        WHEN site_collector <> $7 THEN '{ANOTHER}'
        WHEN pickup_id IS NULL THEN '{errors.PickupNotPaid.code}'
        WHEN status = 'collected' THEN '{errors.PickupAlreadyCollected.code}'
        WHEN distance_m > $14 THEN '{TOO_FAR}'
        ELSE '{COLLECTED}' END AS outcome
    FROM found
), stored AS (
    INSERT INTO waste_scans AS scan (scan_id, collector_id, bin_id, pickup_id, tag_kind,
                                     scanned_at, lat, lng, distance_m, weight_kg, outcome,
                                     flagged)
    SELECT $6, $7, bin_id,
           CASE WHEN outcome IN ('{OUTSIDE}', '{ANOTHER}') THEN NULL ELSE pickup_id END, $9,
           $10, $11, $12, distance_m, $13, outcome, outcome = '{TOO_FAR}'
    FROM decided
    ON CONFLICT (scan_id) DO NOTHING RETURNING scan
), collected AS (
    UPDATE waste_pickups AS pickup SET status = 'collected', collector_id = $7,
        weight_kg = $13, volume_litres = decided.volume_litres, collected_at = $10
    FROM decided
    WHERE pickup.pickup_id = decided.pickup_id AND EXISTS (SELECT FROM stored)
      AND decided.outcome IN ('{COLLECTED}', '{TOO_FAR}')
      AND pickup.status IN ('paid', 'scheduled', 'missed')
    RETURNING pickup, pickup.pickup_id
)
SELECT tag.bin_id AS tag_bin_id, decided.bin_id, stored.scan, collected.pickup,
       CASE WHEN collected.pickup_id IS NOT NULL THEN pg_notify($16, json_build_object(
           'scan_id', $6::uuid, 'pickup_id', decided.pickup_id, 'bin_id', decided.bin_id,
           'site_id', decided.site_id, 'district_code', decided.district_code,
           'collector_id', $7::text, 'collected_at', $15::text, 'weight_kg', $13::numeric,
           'volume_litres', decided.volume_litres, 'flagged', decided.outcome = '{TOO_FAR}',
           'outcome', decided.outcome
       )::text) END AS notified
FROM tag LEFT JOIN decided ON true LEFT JOIN stored ON true LEFT JOIN collected ON true
"""
REFUSALS: dict[str, type[IeumError]] = {
    cls.code: cls
    for cls in (
        errors.OutsideCollectorDistricts,
        errors.AssignedToAnotherCollector,
        errors.PickupNotPaid,
        errors.PickupAlreadyCollected,
    )
}


class NewScan(msgspec.Struct, frozen=True, kw_only=True):
    scan_id: uuid.UUID
    tag: str  # what the phone read: a QR label's text, or an NFC tag's SUN URL
    scanned_at: datetime
    lat: float
    lng: float
    weight_kg: Decimal | None


class Scan(msgspec.Struct, frozen=True, kw_only=True):
    scan_id: uuid.UUID
    collector_id: str
    bin_id: uuid.UUID | None
    pickup_id: uuid.UUID | None
    tag_kind: str
    scanned_at: datetime
    received_at: datetime
    lat: float | None
    lng: float | None
    distance_m: float | None
    weight_kg: Decimal | None
    outcome: str
    flagged: bool

    @property
    def collected(self) -> bool:
        return self.outcome in (COLLECTED, TOO_FAR)


class Collected(msgspec.Struct, frozen=True, kw_only=True):
    """A scan that collected its bin; `duplicate`: stored before, nothing changed now."""

    scan: Scan
    pickup: Pickup
    duplicate: bool


def tag_of(text: str) -> TagInput:
    """A QR label's text (IEUM1.…) or an NFC tag's URL (…?picc_data=…&cmac=…)."""
    text = text.strip()
    if "picc_data=" in text:
        return NfcTap.from_url(text)
    return QrTag(text)


def check(new: NewScan, now: datetime) -> None:
    if new.scanned_at.tzinfo is None:
        raise BadUserInput("scannedAt needs its UTC offset", argument="scannedAt")
    if new.scanned_at > now + CLOCK_SKEW:
        raise BadUserInput("scannedAt is in the future: check the phone's clock")
    if not (-90 <= new.lat <= 90 and -180 <= new.lng <= 180):
        raise BadUserInput("lat is -90..90 and lng -180..180", argument="lat")
    if new.weight_kg is not None and not 0 <= new.weight_kg <= MAX_WEIGHT_KG:
        raise BadUserInput(f"weightKg is 0 to {MAX_WEIGHT_KG}", argument="weightKg")


async def stored(conn: asyncpg.Connection | asyncpg.Pool, scan_id: uuid.UUID) -> Scan | None:
    row = await conn.fetchrow("SELECT * FROM waste_scans WHERE scan_id = $1", scan_id)
    return None if row is None else Scan(**dict(row))


async def scan(
    pool: asyncpg.Pool,
    verifier: Verifier,
    collector: Collector,
    new: NewScan,
    max_distance_m: float,
) -> Collected:
    """Record the scan, or find it stored; raises the refusal (stored or not). `pool`: the
    scans' own (POOL_SETTINGS)."""
    check(new, datetime.now(KST))
    try:
        tag = await verifier.check(tag_of(new.tag))
    except IeumError as refused:
        return await _answer_stored(pool, collector, new.scan_id, refused)
    row = await _record(pool, collector, new, tag, max_distance_m)
    if row["tag_bin_id"] is None:
        assert isinstance(tag, NfcRead)
        return await _answer_stored(pool, collector, new.scan_id, await verifier.refusal(tag))
    if row["bin_id"] is None:
        raise errors.BinNotFound(
            f"the tag names bin {row['tag_bin_id']}, which the city does not have"
        )
    if row["scan"] is None:  # the same scan id, stored by an earlier upload
        before = await stored(pool, new.scan_id)
        assert before is not None
        return await _answer(pool, collector, before)
    found = Scan(**dict(row["scan"]))
    if not found.collected:
        raise REFUSALS[found.outcome](_refusal_text(found.outcome))
    assert row["pickup"] is not None  # locked in a state it collects from
    return Collected(scan=found, pickup=Pickup(**dict(row["pickup"])), duplicate=False)


async def _record(
    pool: asyncpg.Pool,
    collector: Collector,
    new: NewScan,
    tag: VerifiedTag | NfcRead,
    max_distance_m: float,
) -> asyncpg.Record:
    read: tuple[str, int, int] | tuple[None, None, None]
    if isinstance(tag, NfcRead):
        read, bin_id, kind = (tag.uid, tag.key_id, tag.counter), None, "nfc"
    else:
        read, bin_id, kind = (None, None, None), tag.bin_id, tag.kind
    row = await pool.fetchrow(
        SCAN,
        *read,
        bin_id,
        new.scanned_at.astimezone(KST).date(),
        new.scan_id,
        collector.collector_id,
        collector.districts,
        kind,
        new.scanned_at,
        new.lat,
        new.lng,
        None if new.weight_kg is None else new.weight_kg.quantize(GRAMS_10, ROUND_HALF_UP),
        max_distance_m,
        new.scanned_at.isoformat(),
        live.CHANNEL,
    )
    assert row is not None
    return row


async def _answer_stored(
    conn: asyncpg.Connection | asyncpg.Pool,
    collector: Collector,
    scan_id: uuid.UUID,
    refused: IeumError,
) -> Collected:
    """A scan whose tag was refused: a retry finds it stored (a tap's counter is spent
    by its first try); otherwise the refusal."""
    before = await stored(conn, scan_id)
    if before is None:
        raise refused
    return await _answer(conn, collector, before)


async def _answer(
    conn: asyncpg.Connection | asyncpg.Pool, collector: Collector, before: Scan
) -> Collected:
    """What a stored scan answered, answered again."""
    if before.collector_id != collector.collector_id:
        raise BadUserInput("this scanId belongs to another collector's scan", argument="scanId")
    if not before.collected:
        raise REFUSALS[before.outcome](_refusal_text(before.outcome))
    assert before.pickup_id is not None
    pickup = await pickups.by_id(conn, before.pickup_id)
    assert pickup is not None
    return Collected(scan=before, pickup=pickup, duplicate=True)


def _refusal_text(code: str) -> str:
    return {
        errors.OutsideCollectorDistricts.code: "the bin lies outside your company's districts:"
        " do not collect it",
        errors.AssignedToAnotherCollector.code: "the city gave the bin's site to another"
        " collector company: do not collect it",
        errors.PickupNotPaid.code: "the bin has no paid pickup that day: do not collect it",
        errors.PickupAlreadyCollected.code: "the bin's pickup of that day was collected already",
    }[code]


class CollectedPickup(msgspec.Struct, frozen=True, kw_only=True):
    """A pickup collected, as its scan was recorded: what other domains are told of it."""

    scan_id: uuid.UUID
    pickup_id: uuid.UUID
    site_id: uuid.UUID
    site_name: str
    business_name: str
    district_code: str
    owner_client: str
    owner_user: uuid.UUID | None  # the citizen who registered the business, if any
    collected_at: datetime  # the scan's time
    recorded_at: datetime  # when the hub stored it (late for scans uploaded offline)


async def collections_since(
    conn: asyncpg.Connection | asyncpg.Pool,
    after: tuple[datetime, uuid.UUID],
    scanned_since: datetime,
    limit: int = 500,
) -> list[CollectedPickup]:
    """Collections recorded after `after` (recorded_at, scan_id), in that order, of scans
    made since `scanned_since` (which bounds the search by the scans' time index). A
    transaction commits after it began, so a caller that reads as the rows arrive reads
    again a little behind its cursor."""
    rows = await conn.fetch(
        "SELECT s.scan_id, s.pickup_id, p.site_id, si.name AS site_name,"
        " g.name AS business_name, si.district_code, g.owner_client, g.owner_user,"
        " s.scanned_at AS collected_at, s.received_at AS recorded_at"
        " FROM waste_scans s JOIN waste_pickups p USING (pickup_id)"
        " JOIN waste_sites si ON si.site_id = p.site_id"
        " JOIN waste_generators g USING (generator_id)"
        " WHERE s.outcome = ANY($1) AND s.scanned_at >= $2"
        " AND (s.received_at, s.scan_id) > ($3, $4)"
        " ORDER BY s.received_at, s.scan_id LIMIT $5",
        [COLLECTED, TOO_FAR],
        scanned_since,
        *after,
        limit,
    )
    return [CollectedPickup(**dict(row)) for row in rows]
