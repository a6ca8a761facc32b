"""Collection: collector companies, their day's routes, scans of tagged bins (online and
uploaded from offline phones), collected volumes, the live feed of collections, and
waste's part of the District entity.

Who does what: city staff (`waste:city`) register collector companies for districts, see
every figure and follow collections live; a collector company's phones (`waste:collect`,
client credentials, its client id registered by the city) see their districts' routes and
scan bins; a business (`waste:business`) sees the figures of its own sites; a district's
daily volumes are open data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any

import asyncpg
import strawberry
from strawberry.federation.schema_directives import RequiresScopes

from adapters.errors import UpstreamError
from hub.core.context import Info
from hub.core.db import create_pool
from hub.core.errors import BadUserInput, Forbidden, IeumError, Unauthenticated
from hub.core.servers import Servers
from hub.core.settings import Settings
from resolvers.waste import collectors, live, pickups, registry, scans, scopes, volumes
from resolvers.waste.collectors import Collector as CollectorRecord
from resolvers.waste.registry import Owner
from resolvers.waste.settings import WasteSettings
from resolvers.waste.tags import keys
from resolvers.waste.tags.verify import Verifier
from schema.payments import flow
from schema.payments.state import hub_of
from schema.waste import payments_sync, routes_order
from schema.waste.types import Pickup, Site, pickup_of, site_of

log = logging.getLogger(__name__)

CITY = [[scopes.CITY.name]]
COLLECT = [[scopes.COLLECT.name]]
CITY_OR_BUSINESS = [[scopes.CITY.name], [scopes.BUSINESS.name]]
MAX_UPLOAD = 500  # scans in one offline upload
COLLECTORS_SECONDS = 5.0
# A follower's token is checked again at most this often (and once it expires), not on
# every collection: a revoked one is refused within auth's refresh and this.
RECHECK_SECONDS = 1.0


@dataclass
class CollectionState:
    """What a hub process keeps for collection: the tag verifier (keys in memory), the
    collector companies it has seen (a scan needs no query for them), the scans' pool, the
    live feed's listening connection, and settlements running after their scans."""

    settings: WasteSettings
    live: live.LiveCollections
    tag_secret: bytes
    scans_db: asyncpg.Pool
    _verifier: Verifier | None = None
    _collectors: dict[str, tuple[float, CollectorRecord]] = field(default_factory=dict)
    _settling: set[asyncio.Task[Any]] = field(default_factory=set)

    def verifier(self, pool: asyncpg.Pool) -> Verifier:
        if self._verifier is None:
            self._verifier = Verifier(pool, self.tag_secret)
        return self._verifier

    async def collector(self, pool: asyncpg.Pool, client_id: str | None) -> CollectorRecord:
        """The caller's company as read at most COLLECTORS_SECONDS ago: the city's change
        of its districts reaches every process within that time (this one at once)."""
        kept = self._collectors.get(client_id or "")
        if kept is not None and time.monotonic() - kept[0] < COLLECTORS_SECONDS:
            return kept[1]
        found = await collectors.of_client(pool, client_id)
        self._collectors[found.collector_id] = (time.monotonic(), found)
        return found

    def forget(self, collector_id: str) -> None:
        self._collectors.pop(collector_id, None)

    def in_background(self, work: Coroutine[Any, Any, object]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def close(self) -> None:
        for task in list(self._settling):
            task.cancel()
        await asyncio.gather(*self._settling, return_exceptions=True)


@contextlib.asynccontextmanager
async def lifespan(settings: Settings, servers: Servers) -> AsyncIterator[CollectionState]:
    async with live.listening(settings, servers) as feed:
        # Its connections opened as scans come: a hub that serves none keeps none.
        scans_db = await create_pool(
            servers.database, settings.model_copy(update={"db_pool_min": 0}), scans.POOL_SETTINGS
        )
        state = CollectionState(
            settings.section(WasteSettings), feed, keys.secret(settings), scans_db
        )
        try:
            yield state
        finally:
            await state.close()
            await scans_db.close()


def _state(info: Info) -> CollectionState:
    return info.context.state(CollectionState)


def _district(code: str, argument: str = "districtCode") -> str:
    if not (len(code) == 5 and code.isascii() and code.isdigit()):
        raise BadUserInput(f"{argument} is a 5-digit 시군구 code", argument=argument)
    return code


# Collectors and routes


@strawberry.type(description="A collector company: an OAuth client the city allows in districts.")
class Collector:
    id: str = strawberry.field(description="Its OAuth client id.")
    name: str
    districts: list[str] = strawberry.field(description="The 5-digit codes it collects in.")
    created_at: datetime


def collector_of(record: CollectorRecord) -> Collector:
    return Collector(
        id=record.collector_id,
        name=record.name,
        districts=record.districts,
        created_at=record.created_at,
    )


@strawberry.input(description="A position, WGS 84.")
class PositionInput:
    lat: float
    lng: float


@strawberry.type(description="A site to visit on a route, with its bins' pickups.")
class RouteStop:
    position: int = strawberry.field(description="1 for the first stop.")
    site: Site
    pickups: list[Pickup]
    distance_m: float = strawberry.field(
        description="Great-circle metres from the previous stop (the first: from the start;"
        " 0 without one)."
    )


@strawberry.type(description="A collector's day: its districts' paid pickups, site by site.")
class CollectionRoute:
    day: date
    districts: list[str]
    stops: list[RouteStop]
    total_distance_m: float = strawberry.field(
        description="Great-circle metres from the start through every stop; roads are longer."
    )


async def _route(
    info: Info, collector: CollectorRecord, day: date, start: PositionInput | None
) -> CollectionRoute:
    db = info.context.db
    due = await pickups.pickups_for_day(db, collector.districts, day, collector.collector_id)
    sites = await registry.sites_by_ids(db, list({p.site_id for p in due}))
    at: dict[uuid.UUID, list[pickups.Pickup]] = {}
    for pickup in due:
        at.setdefault(pickup.site_id, []).append(pickup)
    visited = list(at)
    points = [routes_order.Point(sites[s].lat, sites[s].lng) for s in visited]
    origin = None if start is None else routes_order.Point(start.lat, start.lng)
    ordered = await routes_order.order(origin, points)
    stops, here, total = [], origin, 0.0
    for number, index in enumerate(ordered, start=1):
        point = points[index]
        step = 0.0 if here is None else routes_order.metres(here, point)
        total += step
        here = point
        site_id = visited[index]
        stops.append(
            RouteStop(
                position=number,
                site=site_of(sites[site_id]),
                pickups=[pickup_of(p) for p in at[site_id]],
                distance_m=round(step, 1),
            )
        )
    return CollectionRoute(
        day=day, districts=collector.districts, stops=stops, total_distance_m=round(total, 1)
    )


# Scans


@strawberry.input(description="A scan of a bin's tag by a collector's phone.")
class ScanInput:
    scan_id: uuid.UUID = strawberry.field(
        description="Made on the phone (a UUID v4) when it scans: the same scan sent again"
        " (an offline upload repeated) is counted once and answers the same."
    )
    tag: str = strawberry.field(
        description="What the phone read: the QR label's text (IEUM1.…) or the NFC tag's"
        " URL (…?picc_data=…&cmac=…)."
    )
    scanned_at: datetime = strawberry.field(
        description="When the phone scanned, with its offset; kept as the collection time."
    )
    lat: float
    lng: float
    weight_kg: float | None = strawberry.field(
        default=None, description="From the truck scale, where there is one."
    )


@strawberry.type(description="A scan that collected its bin.")
class ScanResult:
    scan_id: uuid.UUID
    scanned_at: datetime
    pickup: Pickup
    distance_m: float | None = strawberry.field(
        description="Metres between the phone and the bin's site."
    )
    flagged: bool = strawberry.field(
        description="Collected, but for the city to look at (see `flagReason`)."
    )
    flag_reason: str | None = strawberry.field(
        description="SCAN_TOO_FAR: farther from the site than IEUM_WASTE_SCAN_MAX_DISTANCE_M"
        " (the bin is collected all the same: only the phone's position may be off)."
    )
    duplicate: bool = strawberry.field(
        description="Stored before (this scanId was sent already): counted once."
    )


@strawberry.type(description="What became of one scan of an offline upload.")
class UploadedScan:
    scan_id: uuid.UUID
    collected: bool
    code: str | None = strawberry.field(
        description="Why it was refused, as scanBin's error code (PICKUP_NOT_PAID,"
        " TAG_FORGED …); null when collected."
    )
    message: str | None
    result: ScanResult | None


def _new_scan(scan: ScanInput) -> scans.NewScan:
    return scans.NewScan(
        scan_id=scan.scan_id,
        tag=scan.tag,
        scanned_at=scan.scanned_at,
        lat=scan.lat,
        lng=scan.lng,
        weight_kg=None if scan.weight_kg is None else Decimal(str(scan.weight_kg)),
    )


async def _scan(info: Info, collector: CollectorRecord, scan: ScanInput) -> ScanResult:
    state = _state(info)
    done = await scans.scan(
        state.scans_db,
        state.verifier(info.context.db),
        collector,
        _new_scan(scan),
        state.settings.scan_max_distance_m,
    )
    if not done.duplicate and done.pickup.basis == "kg":
        state.in_background(_settle(info.context.db, hub_of(info), done.pickup.pickup_id))
    found = done.scan
    return ScanResult(
        scan_id=found.scan_id,
        scanned_at=found.scanned_at,
        pickup=pickup_of(done.pickup),
        distance_m=None if found.distance_m is None else round(found.distance_m, 1),
        flagged=found.flagged,
        flag_reason=found.outcome if found.flagged else None,
        duplicate=done.duplicate,
    )


async def _settle(pool: asyncpg.Pool, hub: flow.Payments, pickup_id: uuid.UUID) -> None:
    """A kg pickup's fee against its weight, after the scan answered; on failure the
    waste worker's next round settles it."""
    try:
        await payments_sync.settle_after_weighing(pool, hub, pickup_id)
    except (IeumError, UpstreamError, asyncpg.PostgresError, OSError, TimeoutError) as exc:
        log.warning("waste.scan.settle_later pickup=%s error=%r", pickup_id, exc)


# Volumes


@strawberry.enum(description="The length of the periods figures are summed over.")
class VolumePeriod(Enum):
    DAY = "day"
    HOUR = "hour"


WITHHELD = (
    " Null when fewer than IEUM_WASTE_OPEN_MIN_BUSINESSES businesses (3) had bins collected"
    " that day: open data shows no one business's waste. City staff (waste:city) see it."
)


@strawberry.type(description="One Korean day of a district's food waste (open data).")
class DailyWasteVolume:
    day: date
    collections: int | None = strawberry.field(
        description="Bins collected by the hub's collectors." + WITHHELD
    )
    litres: int | None = strawberry.field(description="Their bins' volumes added up." + WITHHELD)
    weighed_collections: int | None = strawberry.field(
        description="Those weighed by a truck scale." + WITHHELD
    )
    kilograms: float | None = strawberry.field(description="Their weights added up." + WITHHELD)
    rfid_kilograms: float = strawberry.field(
        description="Apartment complexes' RFID bins, from the national volume-rate system."
    )
    rfid_disposals: int
    total_kilograms: float | None = strawberry.field(
        description="kilograms + rfidKilograms." + WITHHELD
    )


@strawberry.type(description="The hub's collections of a district (or site) in a day or hour.")
class WasteVolume:
    district_code: str
    site_id: uuid.UUID | None = strawberry.field(description="Null: the whole district.")
    start: datetime = strawberry.field(description="The day's or hour's start (Korean time).")
    collections: int
    litres: int
    weighed_collections: int
    kilograms: float


def _daily(found: volumes.DistrictDay, withheld: bool) -> DailyWasteVolume:
    return DailyWasteVolume(
        day=found.day,
        collections=None if withheld else found.collections,
        litres=None if withheld else found.litres,
        weighed_collections=None if withheld else found.weighed,
        kilograms=None if withheld else float(found.kg),
        rfid_kilograms=float(found.rfid_kg),
        rfid_disposals=found.rfid_disposals,
        total_kilograms=None if withheld else float(found.total_kg),
    )


def _viewer(info: Info) -> Owner | None:
    """City staff see every site's figures (None); a business, its own sites'."""
    caller = info.context.caller
    if scopes.CITY.name in caller.scopes:
        return None
    if caller.user_id is None or caller.client_id is None:
        raise Forbidden("a business sees its figures through a person signed in to its app")
    return Owner(caller.client_id, uuid.UUID(caller.user_id))


@strawberry.type
class WasteCollectionQuery:
    @strawberry.federation.field(requires_scopes=CITY, description="Collector companies.")
    async def waste_collectors(self, info: Info) -> list[Collector]:
        return [collector_of(c) for c in await collectors.listing(info.context.db)]

    @strawberry.federation.field(
        requires_scopes=COLLECT,
        description="The day's paid pickups in the company's districts (but for sites given"
        " to another company), site by site, in the order to visit them: the shortest open"
        " path OR-Tools finds from `start` (the depot; without it, from whichever site makes"
        " the path shortest).",
    )
    async def waste_route(
        self,
        info: Info,
        day: Annotated[
            date | None, strawberry.argument(description="Korean date; default today.")
        ] = None,
        start: PositionInput | None = None,
    ) -> CollectionRoute:
        collector = await _state(info).collector(info.context.db, info.context.caller.client_id)
        return await _route(info, collector, day or pickups.korea_today(), start)

    @strawberry.federation.field(
        requires_scopes=CITY_OR_BUSINESS,
        description="The hub's collections per district (and site, `bySite`) and day (or"
        " hour) from `from` to `to`, Korean days both included (hours: 31 days at most)."
        " City staff see every site, a business its own.",
    )
    async def waste_volumes(
        self,
        info: Info,
        from_: Annotated[date, strawberry.argument(name="from")],
        to: date,
        period: VolumePeriod = VolumePeriod.DAY,
        by_site: bool = False,
        district_code: str | None = None,
        site_id: uuid.UUID | None = None,
    ) -> list[WasteVolume]:
        owner = _viewer(info)
        found = await volumes.volumes(
            info.context.db,
            from_,
            to,
            period="hour" if period is VolumePeriod.HOUR else "day",
            by_site=by_site or owner is not None,  # a business's figures are its sites'
            district_code=None if district_code is None else _district(district_code),
            site_id=site_id,
            owner=owner,
        )
        return [
            WasteVolume(
                district_code=v.district_code,
                site_id=v.site_id,
                start=v.start,
                collections=v.collections,
                litres=v.litres,
                weighed_collections=v.weighed,
                kilograms=float(v.kg),
            )
            for v in found
        ]


@strawberry.type
class WasteCollectionMutation:
    @strawberry.federation.field(
        requires_scopes=CITY,
        description="Allow an OAuth client (client credentials, waste:collect) as a collector"
        " company in districts; again: its new name and districts.",
    )
    async def register_collector(
        self, info: Info, client_id: str, name: str, districts: list[str]
    ) -> Collector:
        registered = await collectors.register(info.context.db, client_id, name, districts)
        _state(info).forget(registered.collector_id)
        return collector_of(registered)

    @strawberry.federation.field(
        requires_scopes=CITY,
        description="Give a site to one of the collector companies of its district (null:"
        " to none, any of them collects it). A given site is on that company's route only;"
        " another company's scan of its bins is refused (ASSIGNED_TO_ANOTHER_COLLECTOR)."
        " A company registered again without the site's district loses it.",
    )
    async def assign_waste_site(
        self, info: Info, site_id: uuid.UUID, collector_id: str | None
    ) -> Site:
        await collectors.assign_site(info.context.db, site_id, collector_id)
        found = await registry.site_by_id(info.context.db, site_id)
        assert found is not None  # assign_site found it; sites are never deleted
        return site_of(found)

    @strawberry.federation.field(
        requires_scopes=COLLECT,
        description="A scan at pickup: the tag is verified, the bin must have a paid pickup"
        " that day in the company's districts; it is then collected (a kg tariff is settled"
        " against `weightKg`) and city staff see it live. Refusals: TAG_FORGED,"
        " TAG_KEY_REVOKED, TAG_REVOKED, NFC_BAD_CMAC, NFC_COUNTER_REPLAYED,"
        " OUTSIDE_COLLECTOR_DISTRICTS, ASSIGNED_TO_ANOTHER_COLLECTOR, PICKUP_NOT_PAID,"
        " PICKUP_ALREADY_COLLECTED.",
    )
    async def scan_bin(self, info: Info, input: ScanInput) -> ScanResult:
        collector = await _state(info).collector(info.context.db, info.context.caller.client_id)
        return await _scan(info, collector, input)

    @strawberry.federation.field(
        requires_scopes=COLLECT,
        description="Scans a phone kept while offline, each as scanBin would take it, in the"
        " order they were made, each keeping its scannedAt; one outcome per scan, in the"
        " order sent. Sending a batch again counts each scan once.",
    )
    async def upload_scans(self, info: Info, scans: list[ScanInput]) -> list[UploadedScan]:
        if len(scans) > MAX_UPLOAD:
            raise BadUserInput(f"at most {MAX_UPLOAD} scans at once", argument="scans")
        collector = await _state(info).collector(info.context.db, info.context.caller.client_id)
        outcomes: dict[uuid.UUID, UploadedScan] = {}
        # NFC read counters only grow: the taps are checked in the order they were made.
        for scan in sorted(scans, key=lambda s: s.scanned_at):
            if scan.scan_id in outcomes:
                continue
            try:
                result = await _scan(info, collector, scan)
            except IeumError as exc:
                outcomes[scan.scan_id] = UploadedScan(
                    scan_id=scan.scan_id,
                    collected=False,
                    code=exc.extensions["code"],
                    message=str(exc),
                    result=None,
                )
            else:
                outcomes[scan.scan_id] = UploadedScan(
                    scan_id=scan.scan_id, collected=True, code=None, message=None, result=result
                )
        return [outcomes[scan.scan_id] for scan in scans]


# Live


@strawberry.type(description="A bin collected, as it is recorded.")
class WasteCollection:
    scan_id: uuid.UUID
    pickup_id: uuid.UUID
    bin_id: uuid.UUID
    site_id: uuid.UUID
    district_code: str
    collector_id: str
    collected_at: datetime = strawberry.field(description="When the phone scanned the bin.")
    weight_kg: float | None
    volume_litres: int | None
    flagged: bool
    flag_reason: str | None


@strawberry.type
class WasteCollectionSubscription:
    @strawberry.subscription(
        directives=[RequiresScopes(scopes=CITY)],
        description="Each collection in the district as it is recorded (within a second)."
        " Ends with an error if the hub loses its feed or the client falls behind:"
        " subscribe again (and read wasteVolumes for what passed meanwhile).",
    )
    async def waste_collections(
        self, info: Info, district_code: str
    ) -> AsyncGenerator[WasteCollection, None]:
        _allowed(info)
        async with _state(info).live.subscribe(_district(district_code)) as subscriber:
            checked = time.monotonic()
            async for c in subscriber.collections():
                if time.monotonic() - checked >= RECHECK_SECONDS or _expired(info):
                    info.context.recheck()  # a revoked or expired token ends the subscription
                    _allowed(info)
                    checked = time.monotonic()
                yield WasteCollection(
                    scan_id=c.scan_id,
                    pickup_id=c.pickup_id,
                    bin_id=c.bin_id,
                    site_id=c.site_id,
                    district_code=c.district_code,
                    collector_id=c.collector_id,
                    collected_at=c.collected_at,
                    weight_kg=None if c.weight_kg is None else float(c.weight_kg),
                    volume_litres=c.volume_litres,
                    flagged=c.flagged,
                    flag_reason=c.outcome if c.flagged else None,
                )


def _expired(info: Info) -> bool:
    expires_at = info.context.caller.expires_at
    return expires_at is not None and expires_at <= datetime.now(UTC)


def _allowed(info: Info) -> None:
    caller = info.context.caller
    if scopes.CITY.name in caller.scopes:
        return
    if caller.anonymous:
        raise Unauthenticated("wasteCollections needs an access token with scope waste:city")
    raise Forbidden("wasteCollections needs scope waste:city")


# District


@strawberry.federation.type(keys=["code"])
class District:
    """The platform's District as the waste subgraph extends it: its key and the field
    waste adds. In the whole hub these resolvers are handed platform's District: they read
    only the key, `code`."""

    code: str = strawberry.field(description="5-digit administrative code, e.g. '11110'.")

    @strawberry.field(
        description="Food waste collected each Korean day from `from` to `to` (both"
        " included, a year at most): the hub's collections and the apartment complexes'"
        " RFID volumes. Open data; the hub's figures of a day with fewer than"
        " IEUM_WASTE_OPEN_MIN_BUSINESSES businesses are null, except for city staff."
    )
    async def waste_volumes(
        self,
        info: Info,
        from_: Annotated[date, strawberry.argument(name="from")],
        to: date,
    ) -> list[DailyWasteVolume]:
        found = await volumes.district_days(info.context.db, self.code, from_, to)
        if scopes.CITY.name in info.context.caller.scopes:
            return [_daily(day, withheld=False) for day in found]
        k = _state(info).settings.open_min_businesses
        return [_daily(day, withheld=day.withheld(k)) for day in found]

    @classmethod
    def resolve_reference(cls, code: str) -> District:
        if not isinstance(code, str):  # a representation is any JSON (_Any)
            raise BadUserInput(
                'a District\'s code is a string, e.g. "11110"', argument="representations"
            )
        # No query: platform decides which codes exist; an unknown code has no collections.
        return cls(code=code)
