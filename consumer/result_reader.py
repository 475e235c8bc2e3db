"""The consumer's loop: take results off the result queue in batches and hand them to the
processor, sweep for orphans and due refreshes every second, ride out a Redis outage.

A batch leaves the queue only once recorded, so a consumer killed mid-batch loses nothing:
the batch comes back (at once to a consumer restarted on the same machine), and results
already recorded are recognised by their run id and not forwarded again.
"""

from __future__ import annotations

import contextlib
import logging
import time

from smtp_checks.consumer.processor import ResultProcessor
from smtp_checks.shared.backoff import Backoff
from smtp_checks.shared.lease import ProcessName
from smtp_checks.shared.redis_client import REDIS_DOWN
from smtp_checks.shared.result_queue import ResultQueue

log = logging.getLogger("smtp_checks.consumer")

BATCH_SIZE = 500
_IDLE_WAIT = 0.05  # seconds between looks at an empty result queue
_SWEEP_EVERY = 1.0  # seconds between looks for orphans, due refreshes and dead consumers
_LEASE = 30.0  # seconds a consumer's batch stays its own without a sign of life


class ResultReader:
    """Takes results from the result queue in batches until `should_stop`."""

    def __init__(self, queue: ResultQueue, processor: ResultProcessor) -> None:
        self.queue = queue
        self.processor = processor
        self.name = str(ProcessName.mine())
        self.should_stop = False

    def run(self) -> None:
        last_sweep = 0.0  # a sweep (and a reclaim) before the first batch
        backoff = Backoff(base=0.1, cap=5.0)
        while not self.should_stop:
            try:
                sweeping = time.monotonic() - last_sweep >= _SWEEP_EVERY
                if sweeping:
                    returned = self.queue.reclaim()
                    if returned:
                        log.warning("took back %d results from a consumer that died", returned)
                taken = self._step()
                if sweeping:
                    last_sweep = time.monotonic()
                    self.processor.sweep()
                backoff.reset()
            except REDIS_DOWN as error:
                delay = backoff.next_delay()
                log.warning("Redis unavailable (%s): retrying in %.1f s", error, delay)
                time.sleep(delay)
                continue
            if not taken:
                time.sleep(_IDLE_WAIT)
        with contextlib.suppress(*REDIS_DOWN):
            self.queue.leave(self.name)

    def _step(self) -> int:
        batch = self.queue.take(self.name, BATCH_SIZE, lease=_LEASE)
        if batch:
            self.processor.handle(batch)
            self.queue.done(self.name)
        return len(batch)
