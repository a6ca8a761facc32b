"""The seats of one train on one running day, sold per segment of its stops.

A seat is occupied on legs (from one stop to the next), kept as a bit mask per seat: a seat
sold 서울→대전 is free again 대전→부산. Special cars come first, then general cars; a class's
seats are spread evenly over its cars, numbered by row and letter (general 4 abreast,
special 3). Before the partners sell anything, some seats are already gone to other
channels (the station windows, the operator's own app): a share fixed per train, day and
class, taken over the whole route.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache

from adapters.kinds import Seat, SeatClass
from adapters.sandbox.rail_network import NetworkTrain

ABREAST = {SeatClass.GENERAL: "ABCD", SeatClass.SPECIAL: "ABC"}
MOST_SOLD_ELSEWHERE = 60  # percent of a class at most gone to other channels


class NotOnRoute(Exception):
    """The train does not stop at the first station and then at the second."""


@dataclass(frozen=True, slots=True)
class Segment:
    dep_index: int
    arr_index: int

    @property
    def legs(self) -> int:
        """The bit mask of the legs from the departure stop to the arrival stop."""
        return (1 << self.arr_index) - (1 << self.dep_index)


def segment(train: NetworkTrain, dep_station: str, arr_station: str) -> Segment:
    stations = [stop.station for stop in train.stops]
    if dep_station not in stations or arr_station not in stations:
        raise NotOnRoute
    dep, arr = stations.index(dep_station), stations.index(arr_station)
    if dep >= arr:
        raise NotOnRoute
    return Segment(dep, arr)


def layout(train: NetworkTrain) -> dict[SeatClass, tuple[Seat, ...]]:
    """Every seat of the train by class, in the order they are sold."""
    return _layout(train.cars, train.special_seats, train.general_seats)


@lru_cache(maxsize=64)
def _layout(
    cars_in_train: int, special_seats: int, general_seats: int
) -> dict[SeatClass, tuple[Seat, ...]]:
    """Made once per kind of trainset and shared by every run of it, read only (making a
    run's 500-odd seats was about 2.5 ms, and a journey search meets new runs often)."""
    counts = {SeatClass.SPECIAL: special_seats, SeatClass.GENERAL: general_seats}
    total = special_seats + general_seats
    special_cars = 0
    if special_seats:
        special_cars = min(cars_in_train - 1, max(1, round(cars_in_train * special_seats / total)))
    cars = {
        SeatClass.SPECIAL: range(1, special_cars + 1),
        SeatClass.GENERAL: range(special_cars + 1, cars_in_train + 1),
    }
    seats: dict[SeatClass, tuple[Seat, ...]] = {}
    for seat_class, count in counts.items():
        numbers = cars[seat_class]
        per_car = -(-count // len(numbers)) if count else 0
        letters = ABREAST[seat_class]
        seats[seat_class] = tuple(
            Seat(
                car=str(numbers[n // per_car]),
                seat=f"{n % per_car // len(letters) + 1}{letters[n % per_car % len(letters)]}",
            )
            for n in range(count)
        )
    return seats


class Inventory:
    """Seat occupancy of one train run. Not thread-safe: one event loop owns it."""

    def __init__(self, train: NetworkTrain) -> None:
        self.train = train
        self.seats = layout(train)
        self.all_legs = (1 << (len(train.stops) - 1)) - 1
        self.taken: dict[SeatClass, list[int]] = {
            seat_class: [0] * len(seats) for seat_class, seats in self.seats.items()
        }
        for seat_class in self.seats:
            self._sell_elsewhere(seat_class)
        # seats free on a segment, counted once until a seat is taken or given back: a
        # journey search asks about seven trains, every one of them again and again
        self._left: dict[tuple[SeatClass, int], int] = {}

    def left(self, seat_class: SeatClass, legs: int) -> int:
        key = (seat_class, legs)
        found = self._left.get(key)
        if found is None:
            found = self._left[key] = sum(1 for taken in self.taken[seat_class] if not taken & legs)
        return found

    def take(self, seat_class: SeatClass, legs: int, count: int) -> list[int] | None:
        """Occupy `count` seats free on every leg of `legs`, the first free ones in selling
        order (so a party sits together where it can); None when fewer are free."""
        self._left.clear()
        taken = self.taken[seat_class]
        free = [n for n, legs_taken in enumerate(taken) if not legs_taken & legs][:count]
        if len(free) < count:
            return None
        for n in free:
            taken[n] |= legs
        return free

    def give_back(self, seat_class: SeatClass, seats: list[int], legs: int) -> None:
        self._left.clear()
        taken = self.taken[seat_class]
        for n in seats:
            taken[n] &= ~legs

    def leave_free(self, seat_class: SeatClass, count: int) -> None:
        """Sell elsewhere, over the whole route, every seat but the first `count` that are
        free over it; seats partly taken stay as they are."""
        self._left.clear()
        taken = self.taken[seat_class]
        free = [n for n, legs_taken in enumerate(taken) if not legs_taken]
        for n in free[count:]:
            taken[n] = self.all_legs

    def seat(self, seat_class: SeatClass, n: int) -> Seat:
        return self.seats[seat_class][n]

    def _sell_elsewhere(self, seat_class: SeatClass) -> None:
        """The fixed share gone to other channels, spread through the train."""
        count = len(self.seats[seat_class])
        seed = zlib.crc32(f"{self.train.train_no}|{self.train.run_date}|{seat_class}".encode())
        sold = count * (seed % (MOST_SOLD_ELSEWHERE + 1)) // 100
        if not sold:
            return
        step = count / sold
        for k in range(sold):
            self.taken[seat_class][int(k * step)] = self.all_legs
