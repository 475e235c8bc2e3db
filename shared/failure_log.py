"""A failure that repeats, logged when it starts (or changes), then again only every
`every` seconds while it lasts (at DEBUG meanwhile), and its end once: an outage of hours
is a few lines, however often the role tries again meanwhile."""

from __future__ import annotations

import logging
import time


class FailureLog:
    def __init__(self, logger: logging.Logger, *, every: float = 60.0) -> None:
        self._log = logger
        self.every = every
        self._last: str | None = None  # what failed last, None while things work
        self._logged_at = 0.0

    def failed(self, what: str, message: str, *args: object, level: int = logging.WARNING) -> None:
        """Log `message % args` for the failure `what` (the error's text), unless the same
        failure was logged less than `every` seconds ago."""
        now = time.monotonic()
        repeated = what == self._last and now - self._logged_at < self.every
        self._log.log(logging.DEBUG if repeated else level, message, *args)
        if not repeated:
            self._last, self._logged_at = what, now

    def succeeded(self, message: str, *args: object) -> None:
        """Log `message % args` (at INFO) if a failure was logged since the last success."""
        if self._last is not None:
            self._log.info(message, *args)
        self._last = None
