"""Quiet hours: a non-urgent notice accepted at night waits for the Korean morning."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

KST = ZoneInfo("Asia/Seoul")  # citizens' daytime is Korean time (no daylight saving)


def release_at(accepted: datetime, urgent: bool, day_starts: int, day_ends: int) -> datetime:
    """When a notice accepted at `accepted` may first go: at once if urgent or in the
    daytime [day_starts, day_ends) Korean hours, else at the next day_starts."""
    if urgent:
        return accepted
    local = accepted.astimezone(KST)
    if day_starts <= local.hour < day_ends:
        return accepted
    morning = datetime.combine(local.date(), time(day_starts), KST)
    if local.hour >= day_ends:
        morning += timedelta(days=1)
    return morning
