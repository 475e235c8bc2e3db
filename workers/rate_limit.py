"""Celery's per-worker rate limit (`N/s`, `N/m`, `N/h`) for the worker's own consumers."""

from __future__ import annotations

import time
from collections.abc import Callable

from smtp_checks.shared.config import rate_per_minute


class RateLimit:
    """Starts spaced `1/rate` apart. A consumer that looks only every `burst` seconds may
    start what accrued meanwhile (at most `burst` seconds' worth), so polling does not
    lower the rate; with the default of 0, starts are strictly spaced."""

    def __init__(
        self,
        rate_limit: str | None,
        *,
        burst: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = 0.0 if rate_limit is None else 60.0 / rate_per_minute(rate_limit)
        self._burst = burst
        self._clock = clock
        self._next = 0.0

    def take(self, wanted: int = 1) -> int:
        """How many of `wanted` starts may happen now (each is then spent)."""
        if self._interval == 0.0 or wanted <= 0:
            return max(wanted, 0)
        now = self._clock()
        if now < self._next:
            return 0
        accrued_since = max(self._next, now - self._burst)
        granted = min(wanted, 1 + int((now - accrued_since) / self._interval))
        self._next = accrued_since + granted * self._interval
        return granted

    def refund(self, unused: int) -> None:
        """Give back starts taken but not used (the queue had fewer messages)."""
        if unused > 0:
            self._next -= unused * self._interval
