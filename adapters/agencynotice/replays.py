"""The signed requests a process has taken lately, so one sent again verbatim is refused.

A captured request replayed within the timestamp tolerance carries a valid signature; it
is told apart from an agency's retry by its timestamp (a retry is signed afresh). The
memory is per process and bounded: a replay that reaches another replica, or comes after
the oldest entries were dropped, passes here and is one more copy of notices the hub
already has, which the notices domain deduplicates by the agency's notice id.
"""

from __future__ import annotations

from collections import OrderedDict


class Replays:
    def __init__(self, keep_seconds: float, capacity: int) -> None:
        self.keep_seconds = keep_seconds
        self.capacity = capacity
        self._seen: OrderedDict[tuple[str, str, str], float] = OrderedDict()  # -> forget at

    def first_time(self, agency: str, request_id: str, timestamp: str, now: float) -> bool:
        """Remember the request; False if it was taken before."""
        while self._seen and next(iter(self._seen.values())) <= now:
            self._seen.popitem(last=False)
        key = (agency, request_id, timestamp)
        if key in self._seen:
            return False
        self._seen[key] = now + self.keep_seconds
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return True
