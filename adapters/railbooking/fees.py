"""What the operator keeps when a ticket is returned: Korail's 반환 위약금 by time before
departure, as published from 28 May 2025 (docs/upstreams/railbooking.md, "Refunds").

Weekdays are Monday to Thursday; Friday to Sunday and public holidays count as the weekend
(Korail's definition), judged by the passenger's departure date in Korean time. Each ticket
(seat) pays its own fee; a percentage is taken of the ticket's fare, rounded down to 10 won.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from adapters.railbooking.wire import KST

MINIMUM_FEE = 400  # 최저위약금, per ticket
THREE_HOURS = timedelta(hours=3)

# Public holidays on Monday to Thursday matter (Friday to Sunday are weekend anyway): the
# fixed-date ones every year, and 설날, 부처님오신날 and 추석 for the years the sandbox sells.
# Substitute holidays and election days are not modelled.
FIXED_HOLIDAYS = ((1, 1), (3, 1), (5, 5), (6, 6), (8, 15), (10, 3), (10, 9), (12, 25))
LUNAR_HOLIDAYS = frozenset(
    {
        *(date(2026, 2, 16), date(2026, 2, 17), date(2026, 2, 18), date(2026, 5, 24)),
        *(date(2026, 9, 24), date(2026, 9, 25), date(2026, 9, 26)),
        *(date(2027, 2, 6), date(2027, 2, 7), date(2027, 2, 8), date(2027, 5, 13)),
        *(date(2027, 9, 14), date(2027, 9, 15), date(2027, 9, 16)),
        *(date(2028, 1, 26), date(2028, 1, 27), date(2028, 1, 28), date(2028, 5, 2)),
        *(date(2028, 10, 2), date(2028, 10, 3), date(2028, 10, 4)),
    }
)


class NotRefundable(Exception):
    """The train has arrived: a ticket is no longer returned."""


def is_weekend(day: date) -> bool:
    """Friday to Sunday or a public holiday."""
    return day.weekday() >= 4 or (day.month, day.day) in FIXED_HOLIDAYS or day in LUNAR_HOLIDAYS


def percent(fare: int, rate: int) -> int:
    return fare * rate // 100 // 10 * 10


def ticket_fee(fare: int, departs_at: datetime, arrives_at: datetime, at: datetime) -> int:
    """The fee for returning one ticket of `fare` won at `at`; NotRefundable after arrival."""
    if at >= arrives_at:
        raise NotRefundable
    if at >= departs_at:
        after = at - departs_at
        rate = 15 if after <= timedelta(minutes=20) else 40 if after <= timedelta(hours=1) else 70
        return percent(fare, rate)
    weekend = is_weekend(departs_at.astimezone(KST).date())
    if at >= departs_at - THREE_HOURS:
        return percent(fare, 20 if weekend else 5)
    if not weekend:
        return 0
    departure_day = datetime.combine(departs_at.astimezone(KST).date(), time(), KST)
    if at >= departure_day:
        return percent(fare, 10)
    if at >= departure_day - timedelta(days=1):
        return percent(fare, 5)
    return min(MINIMUM_FEE, fare)


def cancel_fee(fares: list[int], departs_at: datetime, arrives_at: datetime, at: datetime) -> int:
    """The fee for returning a reservation's tickets together."""
    return sum(ticket_fee(fare, departs_at, arrives_at, at) for fare in fares)
