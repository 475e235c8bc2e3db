"""The consumer's loop: take results off the result queue in batches and hand them to the
processor, sweep for orphans, due refreshes and starved services every second, ride out a
Redis outage.

A batch leaves the queue only once recorded, so a consumer killed mid-batch loses nothing:
the batch comes back (at once to a consumer restarted on the same machine), and results
already recorded are recognised by their run id and not forwarded again.

Results come first. While the consumer is behind (the results it reads ended more than
`_BEHIND` seconds ago) it sweeps only every `_SWEEP_BEHIND_EVERY` seconds, without looking
for starved services (their results may be the ones waiting), and says once a minute how
far behind it is.
"""

from __future__ import annotations

import contextlib
import logging
import time

import redis

from smtp_checks.consumer import metrics
from smtp_checks.consumer.processor import ResultProcessor
from smtp_checks.shared.failure_log import FailureLog
from smtp_checks.shared.heartbeats import HEARTBEAT_EVERY, Heartbeat, send_heartbeat
from smtp_checks.shared.lease import ProcessName
from smtp_checks.shared.metrics import REDIS_RECONNECTS
from smtp_checks.shared.redis_client import REDIS_DOWN, redis_backoff
from smtp_checks.shared.result_queue import ResultQueue

log = logging.getLogger("smtp_checks.consumer")

BATCH_SIZE = 500
_IDLE_WAIT = 0.05  # seconds between looks at an empty result queue
_SWEEP_EVERY = 1.0  # seconds between looks for orphans, due refreshes and dead consumers
_SWEEP_BEHIND_EVERY = 10.0  # the same while behind with the results
_BEHIND = 5.0  # seconds since the oldest result of a batch ended: behind
_LAG_LOG_EVERY = 60.0
_LEASE = 30.0  # seconds a consumer's batch stays its own without a sign of life


class ResultReader:
    """Takes results from the result queue in batches until `should_stop`."""

    def __init__(self, queue: ResultQueue, processor: ResultProcessor, client: redis.Redis) -> None:
        self.queue = queue
        self._client = client
        self.processor = processor
        self.name = str(ProcessName.mine())
        self.should_stop = False
        self.lag = 0.0  # seconds since the oldest result of the last batch ended
        self._started_at = time.time()
        self._last_sweep = -_SWEEP_BEHIND_EVERY  # a sweep (and a reclaim) before the first batch
        self._last_beat = -HEARTBEAT_EVERY
        self._last_lag_log = time.monotonic()

    def run(self) -> None:
        backoff, outages = redis_backoff(), FailureLog(log)
        while not self.should_stop:
            try:
                taken = self._turn()
                backoff.reset()
                outages.succeeded("Redis reachable again")
            except REDIS_DOWN as error:
                delay = backoff.next_delay()
                REDIS_RECONNECTS.labels("consumer").inc()
                outages.failed(
                    str(error), "Redis unavailable (%s): retrying in %.1f s", error, delay
                )
                time.sleep(delay)
                continue
            if not taken:
                time.sleep(_IDLE_WAIT)
        with contextlib.suppress(*REDIS_DOWN):
            self.queue.leave(self.name)

    def _turn(self) -> int:
        now = time.monotonic()
        behind = self.lag > _BEHIND
        since_sweep = now - self._last_sweep
        sweeping = since_sweep >= (_SWEEP_BEHIND_EVERY if behind else _SWEEP_EVERY)
        if sweeping:
            returned = self.queue.reclaim()
            if returned:
                log.warning("took back %d results from a consumer that died", returned)
        taken = self._step()
        if sweeping:
            self._last_sweep = time.monotonic()
            self.processor.sweep(behind=self.lag > _BEHIND)
        if now - self._last_beat >= HEARTBEAT_EVERY:
            self._last_beat = now
            self._heartbeat()
        if self.lag > _BEHIND and now - self._last_lag_log >= _LAG_LOG_EVERY:
            self._last_lag_log = now
            log.warning(
                "behind with the results: %d waiting, the last read ended %.0f s ago",
                self.queue.length(),
                self.lag,
            )
        return taken

    def _step(self) -> int:
        batch = self.queue.take(self.name, BATCH_SIZE, lease=_LEASE)
        if batch:
            self.processor.handle(batch)
            self.queue.done(self.name)
        self.lag = self.processor.lag if batch else 0.0
        metrics.LAG.set(self.lag)
        return len(batch)

    def _heartbeat(self) -> None:
        now = time.time()
        heartbeat = Heartbeat(
            role="consumer",
            name=self.name,
            at=now,
            started_at=self._started_at,
            figures={"lag": round(self.lag, 3), **self.processor.counts},
        )
        send_heartbeat(self._client, heartbeat)
