"""The GraphQL types of the mobility domain: journeys and train bookings."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from functools import lru_cache

import strawberry

from adapters.kinds import LocalLeg, LocalPath, ScheduledTrain, SeatAvailability
from hub.core.context import Info
from hub.core.errors import BadUserInput, UpstreamUnavailable
from resolvers.mobility import stations
from resolvers.mobility.bookings import Booking as BookingRecord
from resolvers.sensors import scopes as sensor_scopes
from schema.mobility import planner
from schema.mobility.journeys import Gap, Option
from schema.mobility.planner import Access
from schema.sensors.derived import exposure_along


@strawberry.enum(description="How a leg is travelled.")
class LegMode(Enum):
    WALK = "walk"
    BUS = "bus"
    SUBWAY = "subway"


@strawberry.enum(description="일반실 (general) or 특실 (special).")
class SeatClass(Enum):
    GENERAL = "general"
    SPECIAL = "special"


@strawberry.enum(description="Where a booking stands.")
class BookingStatus(Enum):
    HOLDING = "holding"
    HELD = "held"
    PAYING = "paying"
    TICKETED = "ticketed"
    RELEASED = "released"
    FAILED = "failed"
    REFUNDING = "refunding"
    REFUNDED = "refunded"


@strawberry.input(description="A point (WGS84), e.g. a geocoded street address.")
class PlaceInput:
    lat: float
    lng: float


@strawberry.type(description="A rail station (the project's reference list).")
class Station:
    code: str = strawberry.field(description="TAGO node id, e.g. NAT010000 (서울).")
    name: str
    name_en: str
    lat: float
    lng: float


@lru_cache(maxsize=1024)
def station_of(code: str) -> Station:
    """The station's type, made once per code (reference data; never changed after)."""
    found = stations.by_code(code)
    if found is None:
        return Station(code=code, name=code, name_en=code, lat=0.0, lng=0.0)
    return Station(
        code=found.code, name=found.name, name_en=found.name_en, lat=found.lat, lng=found.lng
    )


@strawberry.type(description="A point on a leg.")
class Place:
    name: str = strawberry.field(description="A stop or station; empty for an end point.")
    lat: float
    lng: float


@strawberry.type(description="The air along a walk, from the sensors domain.")
class WalkAir:
    metric: str
    unit: str
    average: float | None = strawberry.field(
        description="Length-weighted mean where the sensors have values; null without any."
    )
    coverage: float = strawberry.field(description="Share of the walk with a value.")


@strawberry.type(description="A walk, bus or subway leg of a local path.")
class Leg:
    mode: LegMode
    from_: Place = strawberry.field(name="from")
    to: Place
    departs_at: datetime
    arrives_at: datetime
    minutes: int
    meters: int
    line: str = strawberry.field(description="Line or bus number; empty for a walk.")
    stops: int

    @strawberry.federation.field(
        requires_scopes=[[sensor_scopes.READ.name]],
        description="Fine dust (PM2.5) along a walking leg (its straight line) in the last"
        " hour, from the taxis' sensors (sensors domain); null for rides and for walks the"
        " sensors do not cover.",
    )
    async def air_quality(self, info: Info) -> WalkAir | None:
        if self.mode != LegMode.WALK or self.meters == 0:
            return None
        points = ((self.from_.lat, self.from_.lng), (self.to.lat, self.to.lng))
        # The last hour, not the hour before the walk: a walk later today has no readings
        # yet, and one window for every leg lets the sensors' cache answer them all.
        at = min(self.departs_at, datetime.now(UTC).replace(second=0, microsecond=0))
        try:
            found = await exposure_along(info, points, at)
        except BadUserInput:  # outside the area the sensors cover
            return None
        return WalkAir(
            metric=found.metric, unit=found.unit, average=found.average, coverage=found.coverage
        )


def _leg(leg: LocalLeg, starts: datetime) -> Leg:
    return Leg(
        mode=LegMode(leg.mode.value),
        from_=Place(name=leg.from_name, lat=leg.from_lat, lng=leg.from_lng),
        to=Place(name=leg.to_name, lat=leg.to_lat, lng=leg.to_lng),
        departs_at=starts,
        arrives_at=starts + timedelta(minutes=leg.minutes),
        minutes=leg.minutes,
        meters=leg.meters,
        line=leg.line,
        stops=leg.stops,
    )


@strawberry.type(description="The way between an end of the journey and a station.")
class LocalPart:
    minutes: int
    fare: int = strawberry.field(description="Won, one adult, card.")
    walk_meters: int
    rides: int = strawberry.field(description="Buses and subways boarded.")
    path: strawberry.Private[LocalPath]
    starts: strawberry.Private[datetime]

    @strawberry.field
    def legs(self) -> list[Leg]:
        """Made when asked for: most apps list a journey's parts before its legs."""
        legs, at = [], self.starts
        for leg in self.path.legs:
            legs.append(_leg(leg, at))
            at += timedelta(minutes=leg.minutes)
        return legs


def local_part(path: LocalPath, starts: datetime) -> LocalPart:
    return LocalPart(
        minutes=path.minutes,
        fare=path.fare,
        walk_meters=path.walk_meters,
        rides=sum(1 for leg in path.legs if leg.mode != "walk"),
        path=path,
        starts=starts,
    )


@strawberry.type(description="Seats left on a train between two stations, and fares.")
class Seats:
    general_left: int
    special_left: int
    general_fare: int
    special_fare: int


def seats_of(found: SeatAvailability) -> Seats:
    return Seats(
        general_left=found.general_left,
        special_left=found.special_left,
        general_fare=found.general_fare,
        special_fare=found.special_fare,
    )


@strawberry.type(description="A train between two stations.")
class TrainLeg:
    train_no: str
    grade: str = strawberry.field(description="KTX, KTX-산천, SRT …")
    run_date: date = strawberry.field(description="The date to book it under (Korea).")
    from_: Station = strawberry.field(name="from")
    to: Station
    departs_at: datetime
    arrives_at: datetime
    adult_fare: int = strawberry.field(description="General class, one adult, won.")
    seats_known: strawberry.Private[SeatAvailability | None]

    @strawberry.field(
        description="Live seats; null with UPSTREAM_UNAVAILABLE when the operator did not"
        " answer in time."
    )
    def seats(self) -> Seats | None:
        if self.seats_known is None:
            raise UpstreamUnavailable(
                f"the operator did not answer for train {self.train_no}", upstream="booking"
            )
        return seats_of(self.seats_known)


def train_leg(train: ScheduledTrain, seats: SeatAvailability | None, run_date: date) -> TrainLeg:
    return TrainLeg(
        train_no=train.train_no,
        grade=train.grade,
        run_date=run_date,
        from_=station_of(train.dep_station),
        to=station_of(train.arr_station),
        departs_at=train.departs_at,
        arrives_at=train.arrives_at,
        adult_fare=train.adult_fare,
        seats_known=seats,
    )


@strawberry.type(description="Door to door: a local path, a train, a local path.")
class Itinerary:
    leave_at: datetime = strawberry.field(description="When to leave the origin.")
    arrive_at: datetime
    minutes: int
    fare: int | None = strawberry.field(
        description="Train (general, one adult) plus local fares; null when a local path is"
        " unknown."
    )
    transfers: int = strawberry.field(description="Buses and subways besides the train.")
    walk_meters: int
    estimated: bool = strawberry.field(
        description="A local path is missing and its time estimated (pessimistically)."
    )
    train: TrainLeg
    access_known: strawberry.Private[Access]
    egress_known: strawberry.Private[Access]
    access_starts: strawberry.Private[datetime]
    egress_starts: strawberry.Private[datetime]

    @strawberry.field(description="From the origin to the train; null when unknown.")
    def access(self) -> LocalPart | None:
        return _part(self.access_known, self.access_starts)

    @strawberry.field(description="From the train to the destination; null when unknown.")
    def egress(self) -> LocalPart | None:
        return _part(self.egress_known, self.egress_starts)


def _part(access: Access, starts: datetime) -> LocalPart | None:
    if access.path is None:
        raise UpstreamUnavailable(
            f"no local path for station {access.station}: its time is estimated",
            upstream="local routes",
        )
    return local_part(access.path, starts)


def itinerary_of(option: Option, run_date: date, alighting: timedelta) -> Itinerary:
    it: planner.Itinerary = option.itinerary
    return Itinerary(
        leave_at=it.leave_at,
        arrive_at=it.arrive_at,
        minutes=int((it.arrive_at - it.leave_at).total_seconds() // 60),
        fare=it.fare,
        transfers=it.transfers,
        walk_meters=it.walk_meters,
        estimated=it.estimated,
        train=train_leg(it.train, option.seats, run_date),
        access_known=it.access,
        egress_known=it.egress,
        access_starts=it.leave_at,
        egress_starts=it.train.arrives_at + alighting,
    )


@strawberry.type(description="A part of the answer that is missing, and why.")
class MissingPart:
    upstream: str
    part: str
    reason: str
    kind: str = strawberry.field(description="timeout, 5xx, malformed, rejected …")


def missing_of(gap: Gap) -> MissingPart:
    return MissingPart(upstream=gap.upstream, part=gap.part, reason=gap.reason, kind=gap.kind)


@strawberry.type(description="Ranked itineraries, and what could not be asked in time.")
class JourneyPlan:
    itineraries: list[Itinerary]
    missing: list[MissingPart]


@strawberry.type(description="A car and seat number.")
class SeatNumber:
    car: str
    seat: str


@strawberry.type(description="Why a booking failed or was refunded.")
class BookingFailure:
    code: str
    message: str


@strawberry.type(description="A train booking for a citizen. Reads are audited.")
class Booking:
    id: uuid.UUID
    status: BookingStatus
    train_no: str
    grade: str
    run_date: date
    from_: Station = strawberry.field(name="from")
    to: Station
    departs_at: datetime
    arrives_at: datetime
    seat_class: SeatClass
    passengers: int
    pnr: str | None
    seats: list[SeatNumber]
    amount: int | None = strawberry.field(description="Won for all seats.")
    pay_by: datetime | None = strawberry.field(description="When an unpaid hold lapses.")
    order_id: str | None = strawberry.field(
        description="The payment's order id: the card step pays this order for `amount`."
    )
    sale_no: str | None = strawberry.field(description="The ticket's sale number.")
    cancel_fee: int
    refunded_amount: int
    failure: BookingFailure | None
    created_at: datetime
    delay_minutes: int = strawberry.field(
        description="The train's expected delay as the operator last announced it (0: on"
        " time); checked every few minutes in the day and a half before departure."
    )
    train_cancelled: bool = strawberry.field(
        description="The operator cancelled the train: the ticket is refunded in full."
    )


def booking_of(record: BookingRecord) -> Booking:
    failure = (
        BookingFailure(code=record.failure_code or "", message=record.failure or "")
        if record.failure
        else None
    )
    return Booking(
        id=record.booking_id,
        status=BookingStatus(record.status),
        train_no=record.train_no,
        grade=record.grade,
        run_date=record.run_date,
        from_=station_of(record.dep_station),
        to=station_of(record.arr_station),
        departs_at=record.departs_at,
        arrives_at=record.arrives_at,
        seat_class=SeatClass(record.seat_class),
        passengers=record.passengers,
        pnr=record.pnr,
        seats=[SeatNumber(car=s["car"], seat=s["seat"]) for s in record.seats],
        amount=record.amount,
        pay_by=record.pay_by,
        order_id=record.order_id,
        sale_no=record.sale_no,
        cancel_fee=record.cancel_fee,
        refunded_amount=record.refunded_amount,
        failure=failure,
        created_at=record.created_at,
        delay_minutes=record.delay_minutes,
        train_cancelled=record.train_cancelled_at is not None,
    )
