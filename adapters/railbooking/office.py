"""The sandbox operator's booking office: holds, tickets, releases and refunds of partners'
reservations on the shared rail network's trains, against seat inventories that deplete.

Every operation runs to its end without awaiting, so two requests on the same event loop
never interleave: of two partners holding the last seat at once, one gets it. A hold
lapses at its pay-by time, checked before every operation, and its seats are free again.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from adapters.kinds import Seat, SeatClass
from adapters.railbooking import fees
from adapters.railbooking.inventory import Inventory, NotOnRoute, segment
from adapters.railbooking.wire import KST, Code, Status
from adapters.sandbox import rail_network
from adapters.sandbox.rail_network import NetworkTrain

DEFAULT_HOLD_MINUTES = 10
SALE_OPENS = timedelta(days=31)  # Korail sells a month ahead
WINDOW = "91001"  # h_orgtk_wct_no: the sandbox's partner sales window


class Refused(Exception):
    """A FAIL answer: its message code, the HTTP status it comes with and a detail."""

    def __init__(self, code: Code, status: int, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.status = status
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Journey:
    """One train between two of its stops on one running day."""

    train: NetworkTrain
    dep_station: str
    arr_station: str
    departs_at: datetime
    arrives_at: datetime
    legs: int


@dataclass(frozen=True, slots=True)
class Availability:
    journey: Journey
    left: dict[SeatClass, int]
    fares: dict[SeatClass, int]  # one adult; 0 for a class the train does not have


@dataclass(frozen=True, slots=True)
class HoldRequest:
    train_no: str
    run_date: date
    dep_station: str
    arr_station: str
    seat_class: SeatClass
    passengers: int


@dataclass
class Reservation:
    pnr: str
    partner_id: str
    partner_ref: str
    request: HoldRequest
    journey: Journey
    seat_numbers: list[int]
    seats: tuple[Seat, ...]
    fare: int  # per seat
    held_at: datetime
    pay_by: datetime
    status: Status = Status.HELD
    payment_ref: str = ""
    sale: tuple[str, str, str] = ("", "", "")  # h_orgtk_sale_dt, _wct_no, _sale_sqno
    refunded_amount: int = 0
    cancel_fee: int = 0
    delay_minutes: int = 0  # the train's expected delay, as the operator announced it
    train_cancelled: bool = False
    changed_at: datetime = field(init=False)

    def __post_init__(self) -> None:
        self.changed_at = self.held_at

    @property
    def amount(self) -> int:
        return self.fare * len(self.seats)


@dataclass(frozen=True, slots=True)
class Running:
    """What the operator announced of a train's run: its expected delay, or cancelled."""

    delay_minutes: int = 0
    cancelled: bool = False


class Office:
    def __init__(self, now: Callable[[], datetime]) -> None:
        self.now = now
        self.hold_minutes = DEFAULT_HOLD_MINUTES
        self.reservations: dict[str, Reservation] = {}
        self.running: dict[tuple[str, date], Running] = {}
        self._inventories: dict[tuple[str, date], Inventory] = {}
        self._by_ref: dict[tuple[str, str], str] = {}
        self._lapsing: list[tuple[datetime, str]] = []
        self._pnrs = itertools.count(1)
        self._sales = itertools.count(1)

    def availability(
        self, train_no: str, run_date: date, dep_station: str, arr_station: str
    ) -> Availability:
        self.lapse()
        journey, inventory = self._journey(train_no, run_date, dep_station, arr_station)
        return Availability(
            journey,
            {c: inventory.left(c, journey.legs) for c in SeatClass},
            {c: self._fare(journey, c) for c in SeatClass},
        )

    def hold(self, partner_id: str, partner_ref: str, wanted: HoldRequest) -> Reservation:
        """Hold seats; the same partner reference answers the reservation it made first."""
        self.lapse()
        known = self._by_ref.get((partner_id, partner_ref))
        if known is not None:
            reservation = self.reservations[known]
            if reservation.request != wanted:
                raise Refused(Code.REF_REUSED, 422, f"partner_ref {partner_ref} is {known}")
            return reservation
        now = self.now()
        journey, inventory = self._journey(
            wanted.train_no, wanted.run_date, wanted.dep_station, wanted.arr_station
        )
        running = self.running.get((wanted.train_no, wanted.run_date), Running())
        if running.cancelled:
            raise Refused(Code.TRAIN_CANCELLED, 409, f"train {wanted.train_no} does not run")
        if now >= journey.departs_at:
            raise Refused(Code.DEPARTED, 409)
        if journey.departs_at - now > SALE_OPENS:
            raise Refused(Code.NOT_ON_SALE, 409, "sales open a month before departure")
        fare = self._fare(journey, wanted.seat_class)
        if not fare:
            raise Refused(Code.SOLD_OUT, 409, f"the train has no {wanted.seat_class} class")
        numbers = inventory.take(wanted.seat_class, journey.legs, wanted.passengers)
        if numbers is None:
            raise Refused(Code.SOLD_OUT, 409)
        pnr = f"82{next(self._pnrs):010d}"
        reservation = Reservation(
            pnr=pnr,
            partner_id=partner_id,
            partner_ref=partner_ref,
            request=wanted,
            journey=journey,
            seat_numbers=numbers,
            seats=tuple(inventory.seat(wanted.seat_class, n) for n in numbers),
            fare=fare,
            held_at=now,
            pay_by=min(now + timedelta(minutes=self.hold_minutes), journey.departs_at),
            delay_minutes=running.delay_minutes,
        )
        self.reservations[pnr] = reservation
        self._by_ref[(partner_id, partner_ref)] = pnr
        heapq.heappush(self._lapsing, (reservation.pay_by, pnr))
        return reservation

    def find(self, partner_id: str, pnr: str) -> Reservation:
        """A partner's own reservation; another partner's is not found."""
        self.lapse()
        reservation = self.reservations.get(pnr)
        if reservation is None or reservation.partner_id != partner_id:
            raise Refused(Code.NOT_FOUND, 404, f"no reservation {pnr}")
        return reservation

    def by_ref(self, partner_id: str, partner_ref: str) -> Reservation | None:
        self.lapse()
        pnr = self._by_ref.get((partner_id, partner_ref))
        return self.reservations[pnr] if pnr else None

    def of_partner(self, partner_id: str, run_date: date | None = None) -> list[Reservation]:
        self.lapse()
        return [
            found
            for found in self.reservations.values()
            if found.partner_id == partner_id
            and (run_date is None or found.request.run_date == run_date)
        ]

    def ticket(self, partner_id: str, pnr: str, amount: int, payment_ref: str) -> Reservation:
        """Issue a held reservation paid `amount`; the same payment again answers it as is."""
        reservation = self.find(partner_id, pnr)
        if reservation.status in (Status.TICKETED, Status.TRAIN_CANCELLED, Status.REFUNDED):
            if reservation.payment_ref != payment_ref:
                raise Refused(Code.ALREADY_TICKETED, 409, f"paid by {reservation.payment_ref}")
            if amount != reservation.amount:
                raise Refused(Code.AMOUNT_MISMATCH, 422, f"the amount is {reservation.amount}")
            return reservation
        if reservation.train_cancelled:
            raise Refused(Code.TRAIN_CANCELLED, 409, f"train {reservation.request.train_no}")
        if reservation.status is Status.CANCELLED:
            raise Refused(Code.HOLD_LAPSED, 409, f"pay-by time was {reservation.pay_by}")
        if reservation.status is Status.RELEASED:
            raise Refused(Code.RELEASED, 409)
        if amount != reservation.amount:
            raise Refused(Code.AMOUNT_MISMATCH, 422, f"the amount is {reservation.amount}")
        now = self.now()
        reservation.status, reservation.payment_ref = Status.TICKETED, payment_ref
        reservation.sale = (
            now.astimezone(KST).strftime("%Y%m%d"),
            WINDOW,
            f"{next(self._sales):05d}",
        )
        reservation.changed_at = now
        return reservation

    def release(self, partner_id: str, pnr: str) -> Reservation:
        """Give a hold's seats back; a hold released or lapsed before answers as it is."""
        reservation = self.find(partner_id, pnr)
        if reservation.status in (Status.TICKETED, Status.TRAIN_CANCELLED, Status.REFUNDED):
            raise Refused(Code.ALREADY_TICKETED, 409, "a ticket is refunded, not released")
        if reservation.status is Status.HELD:
            self._free(reservation, Status.RELEASED)
        return reservation

    def refund(self, partner_id: str, pnr: str) -> Reservation:
        """Return a ticket: the fee for the time left is kept, the rest refunded; a ticket
        of a train the operator cancelled is refunded in full. Again, the refund answers
        as it was made."""
        reservation = self.find(partner_id, pnr)
        if reservation.status is Status.REFUNDED:
            return reservation
        if reservation.status is Status.TRAIN_CANCELLED:
            reservation.refunded_amount = reservation.amount
            self._free(reservation, Status.REFUNDED)
            return reservation
        if reservation.status is not Status.TICKETED:
            raise Refused(Code.NOT_TICKETED, 409, f"the reservation is {reservation.status}")
        journey = reservation.journey
        try:
            fee = fees.cancel_fee(
                [reservation.fare] * len(reservation.seats),
                journey.departs_at,
                journey.arrives_at,
                self.now(),
            )
        except fees.NotRefundable:
            raise Refused(Code.ARRIVED, 409) from None
        reservation.cancel_fee, reservation.refunded_amount = fee, reservation.amount - fee
        self._free(reservation, Status.REFUNDED)
        return reservation

    def lapse(self) -> None:
        """Cancel the holds whose pay-by time has passed, freeing their seats."""
        now = self.now()
        while self._lapsing and self._lapsing[0][0] <= now:
            _, pnr = heapq.heappop(self._lapsing)
            reservation = self.reservations[pnr]
            if reservation.status is Status.HELD:
                self._free(reservation, Status.CANCELLED)

    def announce(self, train_no: str, run_date: date, running: Running) -> int:
        """The operator announces a train's delay or cancels it (for good: a cancelled train
        stays cancelled). Its reservations carry it: tickets become TRAIN_CANCELLED, to be
        refunded in full, holds are cancelled. Returns how many reservations it reached."""
        self.lapse()
        self._train(train_no, run_date)
        key = (train_no, run_date)
        if self.running.get(key, Running()).cancelled:
            running = Running(running.delay_minutes, cancelled=True)
        self.running[key] = running
        reached = 0
        for reservation in self.reservations.values():
            request = reservation.request
            if (request.train_no, request.run_date) != key:
                continue
            reached += 1
            if reservation.delay_minutes != running.delay_minutes:
                reservation.delay_minutes = running.delay_minutes
                reservation.changed_at = self.now()
            if running.cancelled and not reservation.train_cancelled:
                reservation.train_cancelled = True
                if reservation.status is Status.TICKETED:
                    reservation.status, reservation.changed_at = (
                        Status.TRAIN_CANCELLED,
                        self.now(),
                    )
                elif reservation.status is Status.HELD:
                    self._free(reservation, Status.CANCELLED)
        return reached

    def leave_free(self, train_no: str, run_date: date, seat_class: SeatClass, count: int) -> None:
        self.lapse()
        self._inventory(self._train(train_no, run_date)).leave_free(seat_class, count)

    def _free(self, reservation: Reservation, status: Status) -> None:
        request = reservation.request
        inventory = self._inventory(reservation.journey.train)
        inventory.give_back(request.seat_class, reservation.seat_numbers, reservation.journey.legs)
        reservation.status, reservation.changed_at = status, self.now()

    def _train(self, train_no: str, run_date: date) -> NetworkTrain:
        train = rail_network.train(train_no, run_date)
        if train is None:
            raise Refused(Code.NO_SUCH_TRAIN, 404, f"train {train_no} does not run on {run_date}")
        return train

    def _inventory(self, train: NetworkTrain) -> Inventory:
        key = (train.train_no, train.run_date)
        if key not in self._inventories:
            self._inventories[key] = Inventory(train)
        return self._inventories[key]

    def _journey(
        self, train_no: str, run_date: date, dep_station: str, arr_station: str
    ) -> tuple[Journey, Inventory]:
        train = self._train(train_no, run_date)
        try:
            found = segment(train, dep_station, arr_station)
        except NotOnRoute:
            raise Refused(
                Code.NO_SUCH_TRAIN,
                404,
                f"train {train_no} does not stop at {dep_station} and then {arr_station}",
            ) from None
        departs = train.stops[found.dep_index].departs
        arrives = train.stops[found.arr_index].arrives
        assert departs is not None and arrives is not None
        journey = Journey(train, dep_station, arr_station, departs, arrives, found.legs)
        return journey, self._inventory(train)

    @staticmethod
    def _fare(journey: Journey, seat_class: SeatClass) -> int:
        if seat_class is SeatClass.SPECIAL and not journey.train.special_seats:
            return 0
        return rail_network.fare(
            journey.train, journey.dep_station, journey.arr_station, seat_class.value
        )
