"""A thread per forwarder that empties its outbox into Centreon, in order, retrying with
exponential backoff and full jitter while Centreon is unreachable."""

from __future__ import annotations

import logging
import random
import threading
import uuid

import redis

from workers.forwarders.base import Forwarder, ForwardError
from workers.outbox import Outbox

log = logging.getLogger("smtp_checks.delivery")

BATCH_SIZE = 200
_LOCK_TTL = 30.0  # seconds a deliverer keeps its turn without renewing it
_IDLE_WAIT = 1.0  # seconds between looks at an empty outbox (woken early by `wake`)


class Backoff:
    """Delays of 'full jitter' exponential backoff: uniform in [0, min(cap, base * 2^n)]."""

    def __init__(self, base: float = 0.5, cap: float = 60.0) -> None:
        self.base, self.cap, self.failures = base, cap, 0

    def next_delay(self) -> float:
        self.failures += 1
        return random.uniform(0, min(self.cap, self.base * 2 ** min(self.failures, 30)))

    def reset(self) -> None:
        self.failures = 0


class Delivery(threading.Thread):
    def __init__(
        self, outbox: Outbox, forwarder: Forwarder, stop: threading.Event, *, backoff: Backoff
    ) -> None:
        super().__init__(name=f"delivery-{forwarder.name}", daemon=True)
        self.outbox = outbox
        self.forwarder = forwarder
        self._stopping = stop
        self._work = threading.Event()
        self._backoff = backoff
        self._token = uuid.uuid4().hex
        self.delivered = 0

    def wake(self) -> None:
        """New results are in the outbox."""
        self._work.set()

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                delay = self._step()
            except redis.RedisError as error:
                log.warning("outbox %s unavailable: %s", self.outbox.key, error)
                delay = self._backoff.next_delay()
            if delay:
                self._work.wait(delay)
                self._work.clear()
        self.forwarder.close()

    def _step(self) -> float:
        """Deliver one batch; the seconds to wait before the next step (0: go on)."""
        if not self.outbox.hold_delivery(self._token, _LOCK_TTL):
            return _LOCK_TTL / 3  # another consumer delivers this outbox
        dropped = self.outbox.trim()
        if dropped:
            log.warning("outbox %s full: dropped %d refreshes", self.outbox.key, dropped)
        batch = self.outbox.take(BATCH_SIZE)
        if not batch:
            return _IDLE_WAIT
        try:
            self.forwarder.deliver(batch)
        except ForwardError as error:
            delay = self._backoff.next_delay()
            log.warning(
                "%s: %s; %d result(s) wait in the outbox, next try in %.1f s",
                self.forwarder.name, error, self.outbox.length(), delay,
            )  # fmt: skip
            return delay
        self.outbox.delivered()
        self._backoff.reset()
        self.delivered += len(batch)
        return 0.0
