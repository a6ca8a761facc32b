"""Sign-in throttling: per account and per client IP, with exponential backoff, in memory.

Each sign-in attempt counts as a failure from the moment it starts (a success takes it
back), so a burst of parallel guesses is throttled as a series would be. Once an account
has `account_budget` failures in the window, its next attempt waits `base_delay`, then
twice that after each further failure, up to `max_delay`; an IP gets a larger budget,
since many citizens may share one (a city office behind NAT). An account is keyed by the
name typed, whether or not it exists, so the refusal tells nothing about accounts.

In memory per process: with several processes an attacker gets each one's budget, still
a few guesses a minute instead of three a second.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_SECONDS = 15 * 60
ACCOUNT_BUDGET = 5
IP_BUDGET = 50
BASE_DELAY_SECONDS = 30.0
MAX_DELAY_SECONDS = 15 * 60.0
MAX_KEYS = 100_000  # accounts and IPs remembered; the oldest are forgotten beyond


@dataclass(frozen=True)
class Attempt:
    """An attempt let through, to report its outcome with."""

    account: str
    ip: str
    started: float


class TooManyAttempts(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too many attempts, try again in {retry_after} s")
        self.retry_after = retry_after


class SignInThrottle:
    def __init__(
        self,
        *,
        account_budget: int = ACCOUNT_BUDGET,
        ip_budget: int = IP_BUDGET,
        window: float = WINDOW_SECONDS,
        base_delay: float = BASE_DELAY_SECONDS,
        max_delay: float = MAX_DELAY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.budgets = {"account": account_budget, "ip": ip_budget}
        self.window = window
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.clock = clock
        # (kind, key) → times of failures within the window, oldest first
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()

    def begin(self, account: str, ip: str) -> Attempt:
        """Let an attempt through, counted as failed until `succeeded`; raise
        TooManyAttempts (nothing counted) while the account or the IP must wait."""
        now = self.clock()
        account = account.strip().casefold()
        wait = max(self._wait("account", account, now), self._wait("ip", ip, now))
        if wait > 0:
            raise TooManyAttempts(max(1, math.ceil(wait)))
        for key in (("account", account), ("ip", ip)):
            self._failures.setdefault(key, deque()).append(now)
            self._failures.move_to_end(key)
        while len(self._failures) > MAX_KEYS:
            self._failures.popitem(last=False)
        return Attempt(account, ip, now)

    def succeeded(self, attempt: Attempt) -> None:
        """The right password: the account starts afresh; the IP gets its attempt back."""
        self._failures.pop(("account", attempt.account), None)
        failures = self._failures.get(("ip", attempt.ip))
        if failures and attempt.started in failures:
            failures.remove(attempt.started)
            if not failures:
                del self._failures[("ip", attempt.ip)]

    def _wait(self, kind: str, key: str, now: float) -> float:
        failures = self._failures.get((kind, key))
        if not failures:
            return 0.0
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[(kind, key)]
            return 0.0
        over = len(failures) - self.budgets[kind]
        if over < 0:
            return 0.0
        delay = min(self.max_delay, self.base_delay * 2.0**over)
        return failures[-1] + delay - now
