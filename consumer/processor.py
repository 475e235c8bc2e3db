"""The result consumer: render each CheckResult as Centreon output, track the state of
every service, and queue what must reach Centreon (state changes, freshness refreshes,
orphan UNKNOWNs) in each forwarder's outbox.

Results are taken from the result queue in batches and removed only after their batch is
recorded in Redis, so a consumer killed mid-batch loses nothing: the batch comes back, and
results already recorded are recognised by their run id and not forwarded again.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable

import redis
from pydantic import ValidationError

from smtp_checks.consumer.forwarders.base import PassiveResult
from smtp_checks.consumer.service_states import Decision, ServiceStates
from smtp_checks.shared.celery_app import check_queue
from smtp_checks.shared.config import Config
from smtp_checks.shared.lease import ProcessName
from smtp_checks.shared.messages import CheckResult
from smtp_checks.shared.output.options import OutputOptions
from smtp_checks.shared.output.result_output import orphan_output, result_output
from smtp_checks.shared.output.status import Status
from smtp_checks.shared.outstanding import Ledger, OutstandingRun
from smtp_checks.shared.result_queue import ResultQueue

log = logging.getLogger("smtp_checks.consumer")

BATCH_SIZE = 500
_IDLE_WAIT = 0.05  # seconds between looks at an empty result queue
_SWEEP_EVERY = 1.0  # seconds between looks for orphans, due refreshes and dead consumers
_LEASE = 30.0  # seconds a consumer's batch stays its own without a sign of life


def passive_result(
    host: str, service: str, text: str, status: int, check_time: float
) -> PassiveResult:
    """Split rendered plugin text (one line) into output and perfdata at its ` | `."""
    output, _, perfdata = text.rstrip("\n").partition(" | ")
    return PassiveResult(host, service, status, output, perfdata, check_time)


class ResultProcessor:
    """Everything the consumer does with results, free of the queue that brings them."""

    def __init__(
        self,
        config: Config,
        states: ServiceStates,
        ledger: Ledger,
        *,
        on_forward: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.known = {(check.host, check.service): check for check in config.scheduled_checks()}
        self.states = states
        self.ledger = ledger
        self.counts: Counter[str] = Counter()
        self._on_forward = on_forward
        self._clock = clock

    def handle(self, payloads: list[bytes]) -> list[Decision]:
        """Record a batch of results as they come from the result queue (JSON)."""
        items: list[tuple[str, PassiveResult]] = []
        for payload in payloads:
            result = self._parse(payload)
            if result is None:
                continue
            self.ledger.settle(result.run_id)
            if (result.host, result.service) not in self.known:
                self.counts["unknown_service"] += 1
                log.warning(
                    "result for unconfigured service %r on %r: not forwarded",
                    result.service,
                    result.host,
                )
                continue
            rendered = result_output(result).render(OutputOptions(mode=result.mode.value))
            items.append(
                (
                    result.run_id,
                    passive_result(
                        result.host,
                        result.service,
                        rendered.text,
                        rendered.exit_code,
                        result.ended_at,
                    ),
                )
            )
        return self._record(items)

    def sweep(self) -> list[Decision]:
        """Report overdue runs as orphans and queue refreshes of states not sent lately."""
        now = self._clock()
        items = [
            (f"orphan:{run.run_id}", self._orphan(run, now))
            for run in self.ledger.take_orphans(now)
            if (run.host, run.service) in self.known
        ]
        decisions = self._record(items)
        refreshed = self.states.refresh_due(now)
        if refreshed:
            self.counts["refresh"] += refreshed
            self._on_forward()
        return decisions

    def _orphan(self, run: OutstandingRun, now: float) -> PassiveResult:
        self.counts["orphan"] += 1
        waited = now - run.scheduled_for
        text = orphan_output(check_queue(run.site), waited).render(OutputOptions()).text
        log.warning("orphaned: %s run %s, no result after %.0f s", run.check_id, run.run_id, waited)
        return passive_result(run.host, run.service, text, int(Status.UNKNOWN), now)

    def _record(self, items: list[tuple[str, PassiveResult]]) -> list[Decision]:
        if not items:
            return []
        decisions = self.states.record(items, self._clock())
        for decision in decisions:
            self.counts[decision.kind] += 1
        if any(d.kind in ("change", "refresh") for d in decisions):
            self._on_forward()
        return decisions

    def _parse(self, payload: bytes) -> CheckResult | None:
        try:
            return CheckResult.model_validate_json(payload)
        except ValidationError as error:
            self.counts["invalid"] += 1
            log.warning("dropped an invalid result message: %s", error.errors(include_input=False))
            return None


class ResultConsumer:
    """Takes results from the result queue in batches until stopped; rides out a Redis
    restart (redis-py reconnects on the next call)."""

    def __init__(self, queue: ResultQueue, processor: ResultProcessor) -> None:
        self.queue = queue
        self.processor = processor
        self.name = str(ProcessName.mine())
        self.should_stop = False

    def run(self) -> None:
        last_sweep = 0.0  # a sweep (and a reclaim) before the first batch
        failures = 0
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
                failures = 0
            except redis.RedisError as error:
                failures += 1
                log.warning("Redis unavailable (%s): retrying", error)
                time.sleep(min(5.0, 0.1 * 2**failures))
                continue
            if not taken:
                time.sleep(_IDLE_WAIT)
        with contextlib.suppress(redis.RedisError):
            self.queue.leave(self.name)

    def _step(self) -> int:
        batch = self.queue.take(self.name, BATCH_SIZE, lease=_LEASE)
        if batch:
            self.processor.handle(batch)
            self.queue.done(self.name)
        return len(batch)
