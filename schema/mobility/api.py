"""Queries and mutations of the mobility domain.

Journeys are open to any app with `mobility:plan`. Bookings are a citizen's: made, listed
and cancelled with a token the citizen granted `mobility:book` on the consent page, and
visible only to the app that made them for that citizen. Every read is audited.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

import strawberry

from adapters.kinds import SeatClass as OperatorSeatClass
from auth import audit
from hub.core.context import Info
from hub.core.errors import BadUserInput
from resolvers.mobility import bookings, errors, scopes, stations
from resolvers.mobility.bookings import Booking as BookingRecord
from schema.mobility import booking as flow
from schema.mobility import journeys
from schema.mobility.state import state_of
from schema.mobility.types import (
    Booking,
    JourneyPlan,
    PlaceInput,
    SeatClass,
    Station,
    booking_of,
    itinerary_of,
    missing_of,
    station_of,
)
from schema.pagination import (
    Connection,
    aware_time,
    check_first,
    page_of,
    read_cursor,
    uuid_part,
)
from schema.payments.state import PaymentsState

PLAN = [[scopes.PLAN.name]]
BOOK = [[scopes.BOOK.name]]
MAX_ITINERARIES = 20
MAX_BOOKINGS_PAGE = 100
KEY = strawberry.argument(
    description="Unique per request (a UUID v4); send the same key again to retry safely."
)
BOOKING_FIELDS = ("train", "seats", "pnr", "amount", "status")


@strawberry.input(description="The train and seats to hold, as a journey search listed it.")
class HoldSeatsInput:
    train_no: str
    run_date: date
    from_: str = strawberry.field(name="from", description="Station code (Station.code).")
    to: str
    seat_class: SeatClass = SeatClass.GENERAL
    passengers: int = 1


def _booker(info: Info) -> flow.Booker:
    pool = info.context.db
    return flow.Booker(pool, state_of(info), info.context.state(PaymentsState).payments(pool))


def _citizen(info: Info) -> uuid.UUID:
    user = info.context.caller.user_id
    if user is None:
        raise errors.CitizenConsentRequired(
            "bookings are made for a citizen: use a token the citizen granted mobility:book"
        )
    return uuid.UUID(user)


async def _own(info: Info, booking_id: uuid.UUID) -> BookingRecord:
    found = await bookings.by_id(info.context.db, booking_id)
    if (
        found is None
        or found.client_id != info.context.caller.client_id
        or found.user_id != _citizen(info)
    ):
        raise errors.BookingNotFound("you have no booking with this id")
    return found


async def _audit(info: Info, records: list[BookingRecord]) -> None:
    if records:
        await audit.read(
            info,
            action="booking.read",
            subject_type="mobility_booking",
            subjects=[str(record.booking_id) for record in records],
            fields=BOOKING_FIELDS,
        )


async def _shown(info: Info, records: list[BookingRecord]) -> list[Booking]:
    await _audit(info, records)
    return [booking_of(record) for record in records]


def _booking_key(record: BookingRecord) -> tuple[str, str]:
    """A booking's place in `bookings`: newest first, the id breaking ties."""
    return record.created_at.astimezone(UTC).isoformat(), str(record.booking_id)


def _after(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    """The (created_at, booking_id) of a bookings cursor (None: the first page)."""
    return read_cursor(cursor, aware_time, uuid_part)


@strawberry.type
class MobilityQuery:
    @strawberry.federation.field(
        requires_scopes=PLAN,
        description="Door-to-door itineraries with a KTX/SRT train: local paths to stations"
        " near both ends, trains between them, live seats; ranked by arrival (departAfter)"
        " or by latest departure (arriveBy), then fare, transfers and walking. Parts whose"
        " upstream did not answer in time are listed in `missing`.",
    )
    async def journeys(
        self,
        info: Info,
        from_: Annotated[PlaceInput, strawberry.argument(name="from")],
        to: PlaceInput,
        depart_after: datetime | None = None,
        arrive_by: datetime | None = None,
        seat_class: SeatClass = SeatClass.GENERAL,
        passengers: int = 1,
        limit: Annotated[
            int | None,
            strawberry.argument(description="At most this many (default: the hub's setting)."),
        ] = None,
    ) -> JourneyPlan:
        state = state_of(info)
        limit = state.settings.itineraries if limit is None else limit
        if depart_after is not None and arrive_by is not None:
            raise BadUserInput("give departAfter or arriveBy, not both", argument="arriveBy")
        if not 1 <= limit <= MAX_ITINERARIES:
            raise BadUserInput(f"limit is 1 to {MAX_ITINERARIES}", argument="limit")
        if not 1 <= passengers <= flow.MAX_PASSENGERS:
            raise BadUserInput(f"1 to {flow.MAX_PASSENGERS} passengers", argument="passengers")
        for name, place in (("from", from_), ("to", to)):
            if not (33.0 <= place.lat <= 39.0 and 124.0 <= place.lng <= 132.0):
                raise BadUserInput(f"{name} is not in Korea", argument=name)
        when = [
            t if t is None or t.tzinfo else t.replace(tzinfo=UTC) for t in (depart_after, arrive_by)
        ]
        if when == [None, None]:
            when[0] = datetime.now(UTC)
        search = journeys.Search(
            origin=journeys.Point(from_.lat, from_.lng),
            destination=journeys.Point(to.lat, to.lng),
            depart_after=when[0],
            arrive_by=when[1],
            seat_class=OperatorSeatClass(seat_class.value),
            passengers=passengers,
            limit=limit,
        )
        found = await journeys.plan(state, search)
        alighting = timedelta(minutes=state.settings.alighting_minutes)
        return JourneyPlan(
            itineraries=[
                itinerary_of(option, journeys.run_date(option.itinerary.train), alighting)
                for option in found.options
            ],
            missing=[missing_of(gap) for gap in found.missing],
        )

    @strawberry.federation.field(
        requires_scopes=PLAN, description="Rail stations the journey search knows."
    )
    def rail_stations(self) -> list[Station]:
        return [station_of(station.code) for station in stations.STATIONS]

    @strawberry.federation.field(
        requires_scopes=BOOK,
        description="The citizen's bookings made through this app, newest first; the next"
        " page `after` its `pageInfo.endCursor`. Audited.",
    )
    async def bookings(
        self, info: Info, first: int = 20, after: str | None = None
    ) -> Connection[Booking]:
        check_first(first, MAX_BOOKINGS_PAGE)
        found = await bookings.of_citizen(
            info.context.db,
            info.context.caller.client_id or "",
            _citizen(info),
            limit=first + 1,
            after=_after(after),
        )
        await _audit(info, found[:first])
        return page_of(found, first, node=booking_of, key=_booking_key, after=after)

    @strawberry.federation.field(requires_scopes=BOOK, description="One of the citizen's bookings.")
    async def booking(self, info: Info, id: uuid.UUID) -> Booking:
        return (await _shown(info, [await _own(info, id)]))[0]


@strawberry.type
class MobilityMutation:
    @strawberry.federation.field(
        requires_scopes=BOOK,
        description="Hold seats on a train for the citizen and open its payment: pay"
        " `orderId` for `amount` with the card step, then call payBooking before `payBy`."
        " SOLD_OUT when no seat of the class is left.",
    )
    async def hold_seats(
        self, info: Info, input: HoldSeatsInput, idempotency_key: Annotated[str, KEY]
    ) -> Booking:
        request = flow.HoldRequest(
            train_no=input.train_no,
            run_date=input.run_date,
            dep_station=input.from_,
            arr_station=input.to,
            seat_class=OperatorSeatClass(input.seat_class.value),
            passengers=input.passengers,
        )
        held = await flow.hold(
            _booker(info),
            info.context.caller.client_id or "",
            _citizen(info),
            request,
            idempotency_key,
        )
        return (await _shown(info, [held]))[0]

    @strawberry.federation.field(
        requires_scopes=BOOK,
        description="Confirm the card payment of a held booking and issue the ticket."
        " Status PAYING means the card's outcome is not known yet: the hub finishes it.",
    )
    async def pay_booking(
        self,
        info: Info,
        booking_id: uuid.UUID,
        payment_key: str,
        idempotency_key: Annotated[str, KEY],
    ) -> Booking:
        paid = await flow.pay(
            _booker(info), await _own(info, booking_id), payment_key, idempotency_key
        )
        return (await _shown(info, [paid]))[0]

    @strawberry.federation.field(
        requires_scopes=BOOK,
        description="Give back held seats, or cancel a ticket: the operator's fee for the"
        " time left before departure is kept and the rest refunded to the card. Safe to"
        " repeat: a cancelled booking is answered as it is.",
    )
    async def cancel_booking(self, info: Info, booking_id: uuid.UUID) -> Booking:
        done = await flow.cancel(_booker(info), await _own(info, booking_id))
        return (await _shown(info, [done]))[0]
