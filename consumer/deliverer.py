"""A thread per forwarder that empties its outbox into Centreon, in order, retrying with
exponential backoff and full jitter while Centreon is unreachable or refuses.

One consumer at a time delivers an outbox: the thread holds the outbox's lease, renews it
after every request the forwarder makes, and stops at once if it was lost. A consumer
restarted on the same machine takes the lease of its dead predecessor over at once.

A deliverer also remembers, for `REMEMBER_FOR` seconds, what it delivered: a Redis that
forgets a settled result (a failover to a replica the last writes had not reached yet)
gives that result back, and it is settled again without being sent twice.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from smtp_checks.consumer import metrics
from smtp_checks.consumer.forwarders.base import (
    CentreonRightsError,
    Forwarder,
    ForwardError,
    PassiveResult,
)
from smtp_checks.consumer.outbox import Batch, Outbox
from smtp_checks.shared.backoff import Backoff
from smtp_checks.shared.errors import SmtpChecksError
from smtp_checks.shared.failure_log import FailureLog
from smtp_checks.shared.redis_client import REDIS_DOWN, redis_backoff

log = logging.getLogger("smtp_checks.delivery")

BATCH_SIZE = 1000
LEASE_TTL = 20.0  # seconds an outbox stays with a consumer that stopped renewing its lease
_IDLE_WAIT = 1.0  # seconds between looks at an empty outbox (woken early by `wake`)
_REPEAT_EVERY = 600.0  # seconds between reminders of a Centreon failure that keeps repeating
SUMMARY_EVERY = 60.0  # seconds between INFO lines of what a forwarder did
_GAUGES_EVERY = 5.0  # seconds between two readings of the outbox for its metrics
REMEMBER_FOR = 600.0  # seconds a deliverer remembers what it delivered
_REMEMBER_AT_MOST = 200_000  # results remembered, whatever their age (a bound on memory)


class LeaseLost(SmtpChecksError):
    """Another consumer holds this outbox now: stop delivering it."""


class _Delivered:
    """What this deliverer sent lately, by result: the run, its state and its check time (a
    refresh of the same run is a new result, stamped later)."""

    def __init__(self) -> None:
        self._sent: OrderedDict[tuple[str, str, str, int, float], float] = OrderedDict()

    @staticmethod
    def _key(result: PassiveResult) -> tuple[str, str, str, int, float]:
        identity = result.identity
        return identity.host, identity.service, identity.run_id, result.status, result.check_time

    def add(self, result: PassiveResult, now: float) -> None:
        key = self._key(result)
        self._sent[key] = now
        self._sent.move_to_end(key)
        forget_before = now - REMEMBER_FOR
        while self._sent and (
            len(self._sent) > _REMEMBER_AT_MOST or next(iter(self._sent.values())) < forget_before
        ):
            self._sent.popitem(last=False)

    def __contains__(self, result: PassiveResult) -> bool:
        return self._key(result) in self._sent


class Deliverer(threading.Thread):
    def __init__(
        self, outbox: Outbox, forwarder: Forwarder, stop: threading.Event, *, backoff: Backoff
    ) -> None:
        super().__init__(name=f"delivery-{forwarder.name}", daemon=True)
        self.outbox = outbox
        self.forwarder = forwarder
        self._stopping = stop
        self._work = threading.Event()
        self._backoff = backoff  # while Centreon is unreachable or refuses
        self._redis_backoff = redis_backoff()
        self._failures = FailureLog(log, every=_REPEAT_EVERY)  # Centreon's
        self._outages = FailureLog(log)  # Redis's
        self.delivered = 0
        self._summarised: dict[str, int] = {}
        self._next_summary = time.monotonic() + SUMMARY_EVERY
        self._counters = metrics.ForwarderCounters(forwarder.name)
        self._gauges_at = -_GAUGES_EVERY
        self._delivered = _Delivered()

    def wake(self) -> None:
        """New results are in the outbox."""
        self._work.set()

    def run(self) -> None:
        with contextlib.suppress(*REDIS_DOWN):
            self.outbox.note(self.forwarder.name)  # known to `status` before its first batch
        while not self._stopping.is_set():
            try:
                delay = self._step()
                self._redis_backoff.reset()
                self._outages.succeeded("outbox %s reachable again", self.outbox.key)
            except REDIS_DOWN as error:
                self._outages.failed(
                    str(error), "outbox %s unavailable: %s", self.outbox.key, error
                )
                delay = self._redis_backoff.next_delay()
            self._counters.update(self.forwarder.counters())  # whatever the step ended in
            self._maybe_summarise()
            self._maybe_measure()
            if delay:
                self._work.wait(delay)
                self._work.clear()
        self._summarise()
        self.forwarder.close()
        try:
            self.outbox.lease.release()  # the next consumer need not wait for it
        except REDIS_DOWN as error:
            log.warning("could not release the lease of %s: %s", self.outbox.key, error)

    def _step(self) -> float:
        """Deliver one batch; the seconds to wait before the next step (0: go on)."""
        if not self.outbox.lease.hold(LEASE_TTL):
            return LEASE_TTL / 4  # another consumer delivers this outbox
        dropped = self.outbox.trim()
        if dropped:
            log.warning("outbox %s full: dropped %d refreshes", self.outbox.key, dropped)
            metrics.DROPPED.labels(self.forwarder.name, "outbox_full").inc(dropped)
        taken = self.outbox.take(BATCH_SIZE)
        batch = self._not_yet_sent(taken)
        if not batch:
            self.outbox.delivered()  # a batch every result of which was settled
            return 0.0 if taken else _IDLE_WAIT  # more may wait behind results sent already
        try:
            self.forwarder.deliver(batch.results, self._settler(batch))
        except LeaseLost:
            log.warning("%s: another consumer took over this outbox", self.forwarder.name)
            return LEASE_TTL / 4
        except ForwardError as error:
            metrics.FAILURES.labels(self.forwarder.name).inc()
            delay = self._backoff.next_delay()
            self._failures.failed(
                str(error),
                "%s: %s; %d result(s) wait in the outbox, next try in %.1f s",
                self.forwarder.name, error, self.outbox.length(), delay,
                level=logging.ERROR if isinstance(error, CentreonRightsError) else logging.WARNING,
            )  # fmt: skip
            self.outbox.note(self.forwarder.name, failed_at=time.time(), error=str(error))
            return delay
        self.outbox.delivered()
        self.outbox.note(self.forwarder.name, delivered_at=time.time(), error=None)
        self._backoff.reset()
        self._failures.succeeded("%s: delivering again", self.forwarder.name)
        self.delivered += len(batch.results)
        return 0.0

    def _not_yet_sent(self, batch: Batch) -> Batch:
        """`batch` without the results this deliverer sent already (settled again now)."""
        pairs = list(zip(batch.results, batch.slots, strict=True))
        again = {slot for result, slot in pairs if result in self._delivered}
        if not again:
            return batch
        self.outbox.settle(sorted(again))
        log.warning(
            "%s: %d result(s) already delivered came back (Redis lost their delivery: a "
            "failover?): settled, not sent again",
            self.forwarder.name,
            len(again),
        )
        metrics.SENT_ALREADY.labels(self.forwarder.name).inc(len(again))
        kept = [(result, slot) for result, slot in pairs if slot not in again]
        return Batch([result for result, _ in kept], [slot for _, slot in kept])

    def _maybe_measure(self) -> None:
        """The outbox's length and the age of its oldest result, every few seconds."""
        if time.monotonic() - self._gauges_at < _GAUGES_EVERY:
            return
        self._gauges_at = time.monotonic()
        try:
            waiting, oldest = self.outbox.backlog()
        except REDIS_DOWN:
            return
        metrics.OUTBOX_LENGTH.labels(self.forwarder.name).set(waiting)
        age = time.time() - oldest if oldest is not None else 0.0
        metrics.OUTBOX_OLDEST.labels(self.forwarder.name).set(max(0.0, age))

    def _maybe_summarise(self) -> None:
        if time.monotonic() >= self._next_summary:
            self._next_summary = time.monotonic() + SUMMARY_EVERY
            self._summarise()

    def _summarise(self) -> None:
        """One line of what the forwarder did since the last one, if it did anything."""
        counters = self.forwarder.counters()
        changed = {
            name: value - self._summarised.get(name, 0)
            for name, value in counters.items()
            if value != self._summarised.get(name, 0)
        }
        if changed:
            log.info(
                "%s: %s (since the last summary)",
                self.forwarder.name,
                ", ".join(f"{name} {value}" for name, value in changed.items()),
            )
        self._summarised = counters

    def _settler(self, batch: Batch) -> Callable[[Sequence[int]], None]:
        latency = metrics.DELIVERY_LATENCY.labels(self.forwarder.name)

        def settled(positions: Sequence[int]) -> None:
            now = time.time()
            for position in positions:  # sent (or refused for good), whatever Redis does next
                self._delivered.add(batch.results[position], now)
            self.outbox.settle([batch.slots[position] for position in positions])
            for position in positions:
                latency.observe(max(0.0, now - batch.results[position].check_time))
            if not self.outbox.lease.renew(LEASE_TTL):
                raise LeaseLost

        return settled
