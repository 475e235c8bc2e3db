"""How long to wait before trying again: exponential, capped, with jitter, so that many
processes retrying after one outage do not retry together."""

from __future__ import annotations

import random


class Backoff:
    """Delays uniform in [floor x d, d], d = min(cap, base x 2^failures). The default floor 0
    is "full jitter"; a floor of 0.5 keeps each wait at least half its step (for polling)."""

    def __init__(self, base: float = 0.5, cap: float = 60.0, *, floor: float = 0.0) -> None:
        self.base, self.cap, self.floor = base, cap, floor
        self.failures = 0

    def next_delay(self) -> float:
        """The wait after one more failure."""
        step = min(self.cap, self.base * 2 ** min(self.failures, 30))
        self.failures += 1
        return random.uniform(self.floor * step, step)

    def reset(self) -> None:
        """A success: the next failure starts from `base` again."""
        self.failures = 0
