"""A worker's vital signs, as its heartbeat carries them (shared/heartbeats.py): checks in
flight and finished in the last minute, superseded runs dropped, its queue's depth, and
when it last found that queue empty (how the beat tells a lost run from a late one).

A heartbeat is due every `HEARTBEAT_EVERY` seconds, and only while the worker reaches its
queue: one cut off from its broker stops beating and its site, if it was the last, counts
as dead (its queued runs then become orphans, which is what an operator must see).
"""

from __future__ import annotations

import dataclasses
import time

from smtp_checks.shared.heartbeats import ALIVE_FOR, HEARTBEAT_EVERY, Heartbeat

_WINDOW = 60  # seconds over which finished checks are counted


class WorkerVitals:
    def __init__(self, *, name: str, site: str, queue: str, concurrency: int) -> None:
        self._name, self._site, self._queue = name, site, queue
        self._concurrency = concurrency
        self._started_at = time.time()
        self._finished = [0] * _WINDOW  # per second of the last minute, by epoch second
        self._second = int(time.time())
        self.superseded = 0  # runs dropped unrun, since the start
        self.queue_empty_at: float | None = None
        self.queue_seen_at: float | None = None  # the last successful exchange
        self.queue_depth: int | None = None
        self._next_beat = 0.0

    def finished(self, count: int, now: float) -> None:
        """`count` checks finished at `now` (epoch seconds)."""
        self._roll(now)
        self._finished[self._second % _WINDOW] += count

    def exchanged(self, *, started: float, emptied: bool) -> None:
        """An exchange with the queue that started at `started` succeeded; `emptied`: it
        took fewer messages than it asked for, so every message published before `started`
        had been taken by then."""
        self.queue_seen_at = time.time()
        if emptied:
            self.queue_empty_at = started

    def checks_per_minute(self, now: float) -> int:
        self._roll(now)
        return sum(self._finished)

    def heartbeat_due(self, now: float) -> bool:
        reaching = self.queue_seen_at is not None and now - self.queue_seen_at < ALIVE_FOR
        return reaching and now >= self._next_beat

    def heartbeat(self, now: float, *, in_flight: int) -> Heartbeat:
        self._next_beat = now + HEARTBEAT_EVERY
        return Heartbeat(
            role="worker",
            name=self._name,
            at=now,
            started_at=self._started_at,
            site=self._site,
            figures={
                "queue": self._queue,
                "concurrency": self._concurrency,
                "in_flight": in_flight,
                "checks_per_minute": self.checks_per_minute(now),
                "superseded": self.superseded,
                "queue_depth": self.queue_depth,
                "queue_empty_at": self.queue_empty_at,
            },
        )

    def last_heartbeat(self, now: float) -> Heartbeat:
        """The heartbeat a worker writes as it stops: it no longer counts as alive."""
        return dataclasses.replace(self.heartbeat(now, in_flight=0), stopped=True)

    def _roll(self, now: float) -> None:
        second = int(now)
        if second - self._second >= _WINDOW:
            self._finished = [0] * _WINDOW
        else:
            for passed in range(self._second + 1, second + 1):
                self._finished[passed % _WINDOW] = 0
        self._second = max(self._second, second)
