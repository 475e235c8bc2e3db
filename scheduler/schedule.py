"""When each check runs: a pure function of its id and interval, nothing stored.

Slot k of a check runs at `k * interval + phase`, counted from the Unix epoch. The phase is
a fixed fraction of the interval taken from a SHA-256 of the check id (not Python's `hash`,
which changes with every process), so 10,000 checks at 60 s spread evenly over the minute,
and a check keeps its phase across restarts, across beats on other machines and across
reloads. Because every beat computes the same slots, two beats agree on what "slot k of
mx1/login" means, which is what makes enqueueing idempotent (see `scheduler/beat.py`).

A run of slot k is scheduled for its slot time and is stale at the next slot: a run that
has not started by then measures nothing the next one will not measure better.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

_HASH_SPACE = float(2**64)


def phase_fraction(check_id: str) -> float:
    """A stable number in [0, 1) for `check_id`, the same in every process."""
    digest = hashlib.sha256(check_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / _HASH_SPACE


@dataclass(frozen=True)
class Slot:
    """One run of a check: the `index`-th interval since the epoch."""

    check_id: str
    index: int
    scheduled_for: float  # epoch seconds
    stale_at: float  # epoch seconds: the next slot


@dataclass(frozen=True)
class Cadence:
    """The slots of one check: every `interval` seconds, shifted by its own phase."""

    check_id: str
    interval: float
    phase: float = field(init=False)

    def __post_init__(self) -> None:
        if not self.interval > 0:
            raise ValueError(f"interval must be positive, not {self.interval}")
        # A fraction can round up to 1.0 once multiplied; keep the phase inside the interval.
        phase = min(phase_fraction(self.check_id) * self.interval, math.nextafter(self.interval, 0))
        object.__setattr__(self, "phase", phase)

    def slot(self, index: int) -> Slot:
        start = index * self.interval + self.phase
        return Slot(self.check_id, index, start, start + self.interval)

    def latest_slot(self, now: float) -> Slot:
        """The last slot that started at or before `now`: the one run owed at `now`."""
        index = math.floor((now - self.phase) / self.interval)
        # Float division can land one slot off at the boundaries; settle it exactly.
        while self.slot(index).scheduled_for > now:
            index -= 1
        while self.slot(index + 1).scheduled_for <= now:
            index += 1
        return self.slot(index)

    def next_slot(self, now: float) -> Slot:
        """The first slot that starts strictly after `now`."""
        return self.slot(self.latest_slot(now).index + 1)
