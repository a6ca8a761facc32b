"""Booking a train for a citizen, exactly once, with the payments domain for the money.

    hold    stored `holding` → operator hold (our booking id is its partner reference)
            → `held` with PNR, seats, amount and pay-by, and a payment opened
    pay     `paying` → the citizen's card confirmed through payments → ticket issued
            → `ticketed`; a ticket the operator refuses (hold lapsed) → payment refunded
    cancel  held → released; ticketed → `refunding` → operator refund with its fee →
            the rest refunded through payments → `refunded`
    train   the worker asks the operator about ticketed trains leaving soon: a new
            expected delay is stored; a cancelled train's ticket → `refunding` → refunded
            in full (failure code TRAIN_CANCELLED)

Every step is stored before the outside call it precedes and every call is idempotent at
the other end (partner reference, PNR, payments' idempotency keys derived from the
booking), so a retried request or the worker (`sync`) finishing a crashed one charges,
tickets and refunds once. A lost answer is never guessed: a hold is looked up by its
partner reference before it is sent again.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import asyncpg

from adapters.errors import UpstreamError
from adapters.kinds import BookingRefused, RailReservation, SeatClass
from hub.core.errors import BadUserInput, IeumError
from resolvers.mobility import bookings, errors, stations
from resolvers.mobility.bookings import Booking
from resolvers.payments import store as payments_store
from schema.mobility.state import MobilityState
from schema.payments import flow as payments

log = logging.getLogger(__name__)

SOURCE = "mobility"  # the payments domain's source of ticket charges
REFUNDER = "mobility"
PAID = ("confirmed", "partially_refunded")
SOLD_OUT_CODES = frozenset({"ERR211161", "WRR800029", "SOLD_OUT"})
MAX_PASSENGERS = 9
TRAIN_CANCELLED = "TRAIN_CANCELLED"  # the failure code of a booking whose train was cancelled


class TrainChecks:
    """When the worker last asked the operator about booked trains (monotonic seconds)."""

    def __init__(self) -> None:
        self.last: float | None = None

    def due(self, every_seconds: float) -> bool:
        now = time.monotonic()
        if self.last is not None and now - self.last < every_seconds:
            return False
        self.last = now
        return True


@dataclass(frozen=True)
class Booker:
    """What the flow needs: the database, mobility's adapters and the payments flow."""

    pool: asyncpg.Pool
    state: MobilityState
    payments: payments.Payments
    trains: TrainChecks = field(default_factory=TrainChecks)


@dataclass(frozen=True)
class HoldRequest:
    train_no: str
    run_date: date
    dep_station: str
    arr_station: str
    seat_class: SeatClass
    passengers: int

    def as_json(self) -> dict[str, object]:
        return {
            "trainNo": self.train_no,
            "runDate": self.run_date.isoformat(),
            "from": self.dep_station,
            "to": self.arr_station,
            "seatClass": self.seat_class.value,
            "passengers": self.passengers,
        }


# Hold


async def hold(
    b: Booker, client_id: str, user_id: uuid.UUID, request: HoldRequest, key: str
) -> Booking:
    """Hold seats for the citizen and open the payment the app's card step confirms. The
    same key again answers the same booking (finishing it if it was left mid-way)."""
    _check(request)
    train = await _scheduled(b, request)
    new = bookings.NewBooking(
        client_id=client_id,
        user_id=user_id,
        idempotency_key=key,
        request=request.as_json(),
        operator=b.state.settings.booking_adapter,
        train_no=request.train_no,
        grade=train.grade,
        run_date=request.run_date,
        dep_station=request.dep_station,
        arr_station=request.arr_station,
        departs_at=train.departs_at,
        arrives_at=train.arrives_at,
        seat_class=request.seat_class.value,
        passengers=request.passengers,
    )
    booking, created = await bookings.open_booking(b.pool, new)
    if booking.user_id != user_id or booking.request != request.as_json():
        raise errors.KeyReused("this idempotency key was used for another booking request")
    if booking.status == "failed":
        raise _refusal(booking.failure_code or "", booking.failure or "")
    if booking.status == "holding":
        booking = await _send_hold(b, booking, retry=not created)
    if booking.status == "held":
        booking = await _ensure_payment(b, booking)
    return booking


def _check(request: HoldRequest) -> None:
    if not 1 <= request.passengers <= MAX_PASSENGERS:
        raise BadUserInput(f"1 to {MAX_PASSENGERS} passengers", argument="passengers")
    for code in (request.dep_station, request.arr_station):
        if stations.by_code(code) is None:
            raise BadUserInput(f"no station has the code {code!r}", argument="input")
    if request.dep_station == request.arr_station:
        raise BadUserInput("the stations are the same", argument="input")


async def _scheduled(b: Booker, request: HoldRequest) -> _Train:
    timetable = await b.state.timetable()
    key = ("trains", request.dep_station, request.arr_station, request.run_date)
    listed = await b.state.timetables.get(
        key, lambda: timetable.trains(request.dep_station, request.arr_station, request.run_date)
    )
    for train in listed:
        if train.train_no == request.train_no:
            if train.departs_at <= datetime.now(UTC):
                raise errors.TrainNotRunning(f"train {request.train_no} has left")
            return _Train(train.grade, train.departs_at, train.arrives_at)
    raise errors.TrainNotRunning(
        f"train {request.train_no} does not run from {request.dep_station} to"
        f" {request.arr_station} on {request.run_date.isoformat()}"
    )


@dataclass(frozen=True)
class _Train:
    grade: str
    departs_at: datetime
    arrives_at: datetime


async def _send_hold(b: Booker, booking: Booking, *, retry: bool) -> Booking:
    """The hold call for a `holding` booking. A retry (after a lost answer) asks the
    operator for the hold by our reference first; the hold itself is idempotent by that
    reference too, so a hold is never made twice."""
    operator = await b.state.booking()
    reference = str(booking.booking_id)
    try:
        found = await operator.reservation_by_ref(reference) if retry else None
        if found is None:
            found = await operator.hold(
                booking.train_no,
                booking.run_date,
                booking.dep_station,
                booking.arr_station,
                SeatClass(booking.seat_class),
                booking.passengers,
                partner_ref=reference,
            )
    except BookingRefused as exc:
        failed = await bookings.move(
            b.pool,
            booking.booking_id,
            ("holding",),
            "failed",
            failure_code=exc.code,
            failure=exc.message,
        )
        log.info("mobility.hold_refused booking=%s code=%s", booking.booking_id, exc.code)
        if failed is None:
            return await _reread(b, booking)
        raise _refusal(exc.code, exc.message) from None
    return await _held(b, booking, found)


async def _held(b: Booker, booking: Booking, found: RailReservation) -> Booking:
    moved = await bookings.move(
        b.pool,
        booking.booking_id,
        ("holding",),
        "held",
        pnr=found.pnr,
        seats=[{"car": seat.car, "seat": seat.seat} for seat in found.seats],
        amount=found.amount,
        pay_by=found.pay_by,
    )
    return moved or await _reread(b, booking)


async def _ensure_payment(b: Booker, booking: Booking) -> Booking:
    """A held booking has a payment the citizen can confirm: the first one, or a new one
    when the last was declined or lapsed (its key derives from the one it replaces)."""
    current = await _payment(b, booking)
    if current is not None and current.status not in ("failed", "expired"):
        return booking
    assert booking.amount is not None
    key = f"booking-{booking.booking_id}" + (f"-after-{current.payment_id}" if current else "")
    opened = await payments.charge(
        b.payments,
        payments.Collector(booking.client_id, booking.user_id, None),
        source=SOURCE,
        reference=str(booking.booking_id),
        district_code=b.state.settings.payments_district,
        item=_item(booking),
        amount=booking.amount,
        payer_name="승차권 구매자",
        key=key,
    )
    touched = await bookings.touch(
        b.pool, booking.booking_id, payment_id=opened.payment_id, order_id=opened.order_id
    )
    assert touched is not None
    return touched


def _item(booking: Booking) -> str:
    dep, arr = stations.by_code(booking.dep_station), stations.by_code(booking.arr_station)
    route = f"{dep.name if dep else booking.dep_station}→{arr.name if arr else booking.arr_station}"
    return f"{booking.grade} {booking.train_no} {route} {booking.run_date.isoformat()} 승차권"


async def _payment(b: Booker, booking: Booking) -> payments_store.Payment | None:
    if booking.payment_id is None:
        return None
    return await payments_store.by_id(b.pool, booking.payment_id)


# Pay


async def pay(b: Booker, booking: Booking, payment_key: str, key: str) -> Booking:
    """Confirm the citizen's card for a held booking, then issue the ticket. An unknown
    card outcome leaves the booking `paying`: the worker finishes it."""
    if booking.status in ("paying", "ticketed", "refunding", "refunded"):
        return await _finish_paying(b, booking) if booking.status == "paying" else booking
    if booking.status != "held":
        raise errors.BookingClosed(f"the booking is {booking.status}", status=booking.status)
    if booking.pay_by is not None and booking.pay_by <= datetime.now(UTC):
        raise errors.HoldLapsed("the seats' hold lapsed before payment: book again")
    assert booking.order_id is not None and booking.amount is not None
    paying = await bookings.move(b.pool, booking.booking_id, ("held",), "paying")
    if paying is None:
        return await pay(b, await _reread(b, booking), payment_key, key)
    payment = await payments.confirm(
        b.payments,
        payments.Collector(booking.client_id, booking.user_id, None),
        booking.order_id,
        payment_key,
        booking.amount,
        key,
    )
    if payment.status in ("failed", "expired"):
        back = await bookings.move(b.pool, booking.booking_id, ("paying",), "held")
        reopened = await _ensure_payment(b, back or await _reread(b, booking))
        raise errors.PaymentDeclined(
            f"the card was declined: {payment.failure_message or payment.failure_code}",
            gatewayCode=payment.failure_code,
            orderId=reopened.order_id,
        )
    return await _finish_paying(b, paying, payment)


async def _finish_paying(
    b: Booker, booking: Booking, payment: payments_store.Payment | None = None
) -> Booking:
    """A `paying` booking after its payment settled: ticket it, or give the seats back
    to `held` when the card failed. Unknown outcomes wait."""
    payment = payment or await _payment(b, booking)
    if payment is None or payment.status not in (*PAID, "failed", "expired"):
        return booking
    if payment.status in ("failed", "expired"):
        return await bookings.move(b.pool, booking.booking_id, ("paying",), "held") or booking
    if b.state.settings.crash_point == "after_payment":
        log.critical("mobility.crash_drill point=after_payment")
        os._exit(70)  # as a killed process would: the card charged, no ticket yet
    return await _ticket(b, booking, payment)


async def _ticket(b: Booker, booking: Booking, payment: payments_store.Payment) -> Booking:
    operator = await b.state.booking()
    assert booking.pnr is not None and booking.amount is not None
    try:
        issued = await operator.ticket(booking.pnr, booking.amount, str(payment.payment_id))
    except BookingRefused as exc:
        log.warning(
            "mobility.ticket_refused booking=%s code=%s: refunding", booking.booking_id, exc.code
        )
        refunding = await bookings.move(
            b.pool,
            booking.booking_id,
            ("paying",),
            "refunding",
            failure_code=exc.code,
            failure=f"the operator did not issue the ticket: {exc.message}",
        )
        return await _refund(b, refunding or await _reread(b, booking))
    moved = await bookings.move(
        b.pool, booking.booking_id, ("paying",), "ticketed", sale_no=issued.sale_no, pay_by=None
    )
    return moved or await _reread(b, booking)


# Cancel


async def cancel(b: Booker, booking: Booking) -> Booking:
    """Give back held seats, or cancel a ticket for a refund less the operator's fee.
    Cancelling again answers the booking as it is."""
    operator = await b.state.booking()
    if booking.status in ("released", "refunded", "failed"):
        return booking
    if booking.status == "held":
        assert booking.pnr is not None
        released = await operator.release(booking.pnr)
        moved = await bookings.move(
            b.pool, booking.booking_id, ("held",), "released", seats=_seats(released)
        )
        return moved or await _reread(b, booking)
    if booking.status == "ticketed":
        moved = await bookings.move(b.pool, booking.booking_id, ("ticketed",), "refunding")
        return await _refund(b, moved or await _reread(b, booking))
    if booking.status == "refunding":
        return await _refund(b, booking)
    raise errors.BookingClosed(
        f"a {booking.status} booking cannot be cancelled now: try again in a moment",
        status=booking.status,
    )


def _seats(reservation: RailReservation) -> list[dict[str, str]]:
    return [{"car": seat.car, "seat": seat.seat} for seat in reservation.seats]


async def _refund(b: Booker, booking: Booking) -> Booking:
    """`refunding`: the operator's refund if a ticket was issued (its fee kept), then the
    rest back to the card through payments. Both idempotent, so safe to run again."""
    if booking.status != "refunding":
        return booking
    assert booking.payment_id is not None and booking.amount is not None
    fee = 0
    if booking.sale_no is not None:
        assert booking.pnr is not None
        operator = await b.state.booking()
        refunded = await operator.refund(booking.pnr)
        fee = refunded.cancel_fee
    amount = booking.amount - fee
    if amount > 0:
        try:
            await payments.refund(
                b.payments,
                REFUNDER,
                booking.payment_id,
                amount,
                _refund_reason(booking),
                f"refund-{booking.booking_id}",
            )
        except IeumError as exc:
            if exc.code != "NOT_REFUNDABLE":
                raise
            log.warning("mobility.refund_done_already booking=%s", booking.booking_id)
    moved = await bookings.move(
        b.pool,
        booking.booking_id,
        ("refunding",),
        "refunded",
        cancel_fee=fee,
        refunded_amount=max(amount, 0),
    )
    return moved or await _reread(b, booking)


def _refund_reason(booking: Booking) -> str:
    if booking.failure_code == TRAIN_CANCELLED:
        return "열차 운행 취소 환불"
    return "승차권 취소 환불" if booking.sale_no else "승차권 미발권 환불"


# The operator's changes to booked trains


async def check_trains(b: Booker) -> int:
    """Ask the operator about each ticketed train leaving within IEUM_MOBILITY_TRAIN_CHECK_
    HOURS: a new expected delay is stored with the time it was seen; a cancelled train's
    booking moves to `refunding` in the same update and is refunded in full. Returns how
    many bookings changed."""
    now = datetime.now(UTC)
    until = now + timedelta(hours=b.state.settings.train_check_hours)
    changed = 0
    after: tuple[datetime, uuid.UUID] | None = None
    while page := await bookings.ticketed_departing(b.pool, now, until, after):
        for booking in page:
            try:
                changed += await _check_train(b, booking)
            except (UpstreamError, IeumError) as exc:
                log.warning(
                    "mobility.train_check_failed booking=%s error=%r", booking.booking_id, exc
                )
        after = (page[-1].departs_at, page[-1].booking_id)
    return changed


async def _check_train(b: Booker, booking: Booking) -> bool:
    operator = await b.state.booking()
    assert booking.pnr is not None
    found = await operator.reservation(booking.pnr)
    if found is None:
        return False
    seen = datetime.now(UTC)
    if found.train_cancelled:
        refunding = await bookings.move(
            b.pool,
            booking.booking_id,
            ("ticketed",),
            "refunding",
            delay_minutes=found.delay_minutes,
            train_cancelled_at=seen,
            changed_at=seen,
            failure_code=TRAIN_CANCELLED,
            failure="the operator cancelled the train: refunded in full",
        )
        if refunding is None:
            return False
        log.info("mobility.train_cancelled booking=%s", booking.booking_id)
        await _refund(b, refunding)
        return True
    if found.delay_minutes == booking.delay_minutes:
        return False
    await bookings.touch(
        b.pool, booking.booking_id, delay_minutes=found.delay_minutes, changed_at=seen
    )
    log.info(
        "mobility.train_delayed booking=%s minutes=%d", booking.booking_id, found.delay_minutes
    )
    return True


# The worker's round


async def sync(b: Booker) -> int:
    """Finish what requests left: holds and confirms whose answer was lost, paid bookings
    without a ticket, lapsed holds, refunds under way; and every
    IEUM_MOBILITY_TRAIN_CHECK_SECONDS, the booked trains' delays and cancellations.
    Returns how many moved."""
    stale = datetime.now(UTC) - timedelta(seconds=b.state.settings.holding_stale_seconds)
    moved = 0
    if b.trains.due(b.state.settings.train_check_seconds):
        moved += await check_trains(b)
    for booking in await bookings.unfinished(b.pool, stale):
        try:
            after = await _finish(b, booking)
        except (UpstreamError, IeumError) as exc:
            log.warning("mobility.sync_failed booking=%s error=%r", booking.booking_id, exc)
            continue
        moved += after.status != booking.status
    return moved


async def _finish(b: Booker, booking: Booking) -> Booking:
    if booking.status == "holding":
        try:
            return await _send_hold(b, booking, retry=True)
        except (errors.SoldOut, errors.BookingRefused):  # stored as failed
            return await _reread(b, booking)
    if booking.status == "paying":
        return await _finish_paying(b, booking)
    if booking.status == "refunding":
        return await _refund(b, booking)
    # held: paid meanwhile (a webhook, a confirm answered late), or lapsed unpaid
    payment = await _payment(b, booking)
    if payment is not None and payment.status in PAID:
        paying = await bookings.move(b.pool, booking.booking_id, ("held",), "paying")
        return await _finish_paying(b, paying, payment) if paying else booking
    if booking.pay_by is not None and booking.pay_by <= datetime.now(UTC):
        if payment is not None and payment.status in ("confirming", "unknown"):
            return booking  # the card may have gone through: payments finds out first
        operator = await b.state.booking()
        assert booking.pnr is not None
        await operator.release(booking.pnr)
        return (
            await bookings.move(
                b.pool, booking.booking_id, ("held",), "released", failure="hold lapsed unpaid"
            )
            or booking
        )
    return booking


async def _reread(b: Booker, booking: Booking) -> Booking:
    found = await bookings.by_id(b.pool, booking.booking_id)
    assert found is not None
    return found


def _refusal(code: str, message: str) -> IeumError:
    if code in SOLD_OUT_CODES:
        return errors.SoldOut(f"sold out: {message}", operatorCode=code)
    return errors.BookingRefused(f"the operator refused: {message}", operatorCode=code)
