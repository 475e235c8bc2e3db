"""Which beat enqueues: a Redis lock with a TTL, held by one beat and renewed while it lives.

The lock is a lease (shared/lease.py): one key naming the beat that holds it, with a TTL.
Only the holder may extend or delete it, so a beat whose lock expired (a long pause, a
network split) can never renew or release the lock another beat has taken since; a beat
restarted on the same machine takes over from its dead predecessor at once. A holder renews
every ttl/3 and stops enqueueing at the first renewal that fails; after a Redis error it
tries again within half a second (backing off to ttl/3), so that it leads again within about
a second of Redis coming back (a restart, a Sentinel failover). It counts itself leader
only until `ttl` after the last renewal it *sent*, on its own monotonic clock, so it stops
no later than the moment another beat can take the key.

Two leaders can still overlap for the length of a network round trip; the per-slot NX key
of `scheduler/beat.py` makes that harmless: no slot is enqueued twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from smtp_checks.shared.backoff import Backoff
from smtp_checks.shared.lease import Lease

log = logging.getLogger(__name__)

# A beat that could not reach Redis tries the lock again sooner than ttl/3: after 0.5 s,
# then backing off to ttl/3 while Redis stays away. After a restart or a failover it
# enqueues again within about a second of Redis being back. The script compares holders:
# trying often never makes a second leader.
RETRY_AFTER_ERROR = 0.5


class LeaderLock:
    """Acquire, keep and release leadership; call `tick()` often (at least every ttl/3)."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        *,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0:
            raise ValueError("the lock TTL must be positive")
        self._lease = Lease(client, key)
        self.key = key
        self.ttl = ttl
        self._clock = clock
        self._valid_until = 0.0  # monotonic: leader until then, unless renewed
        self._next_attempt = 0.0  # monotonic: when to acquire or renew next
        self._errors = Backoff(base=RETRY_AFTER_ERROR, cap=ttl / 3, floor=0.5)

    @property
    def is_leader(self) -> bool:
        return self._clock() < self._valid_until

    @property
    def next_attempt(self) -> float:
        """Monotonic time of the next acquire or renew."""
        return self._next_attempt

    def tick(self) -> bool:
        """Acquire or renew when due; return whether this beat may enqueue now."""
        now = self._clock()
        if now >= self._next_attempt:
            self._next_attempt = now + self.ttl / 3
            if self.is_leader:
                self._try_renew(now)
            else:
                self._try_acquire(now)
        return self.is_leader

    def release(self) -> None:
        """Give the lock up (on a clean exit) so another beat takes over at once."""
        was_leader = self.is_leader
        self._valid_until = 0.0
        try:
            self._lease.release()
        except redis.RedisError as error:
            log.warning("could not release the leader lock %s: %s", self.key, error)
            return
        if was_leader:
            log.info("released the leader lock %s", self.key)

    def _try_acquire(self, sent_at: float) -> None:
        try:
            acquired = self._lease.hold(self.ttl)
        except redis.RedisError as error:
            log.warning("cannot reach Redis to take the leader lock: %s", error)
            self._retry_soon(sent_at)
            return
        self._errors.reset()
        if acquired:
            self._valid_until = sent_at + self.ttl
            log.info("took the leader lock %s: this beat enqueues", self.key)

    def _try_renew(self, sent_at: float) -> None:
        try:
            renewed = self._lease.renew(self.ttl)
        except redis.RedisError as error:
            # Unsure whether we still hold it: stop now rather than risk a second leader.
            self._valid_until = 0.0
            log.warning("cannot renew the leader lock, stopped enqueueing: %s", error)
            self._retry_soon(sent_at)
            return
        self._errors.reset()
        if renewed:
            self._valid_until = sent_at + self.ttl
        else:
            self._valid_until = 0.0
            log.warning("lost the leader lock %s to another beat: stopped enqueueing", self.key)

    def _retry_soon(self, now: float) -> None:
        self._next_attempt = min(self._next_attempt, now + self._errors.next_delay())
