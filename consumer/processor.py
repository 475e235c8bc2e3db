"""What the consumer does with results: render each CheckResult as Centreon output, track
the state of every service, and queue what must reach Centreon (state changes, freshness
refreshes, orphan UNKNOWNs) in each forwarder's outbox. Free of the queue that brings them
(consumer/result_reader.py): a batch recorded twice forwards nothing twice."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

from pydantic import ValidationError

from smtp_checks.consumer.forwarders.base import PassiveResult
from smtp_checks.consumer.service_states import Decision, ServiceStates
from smtp_checks.shared.celery_app import check_queue
from smtp_checks.shared.config import Config
from smtp_checks.shared.identity import CheckIdentity
from smtp_checks.shared.messages import CheckResult
from smtp_checks.shared.output.options import OutputOptions
from smtp_checks.shared.output.plugin_output import PluginOutput
from smtp_checks.shared.outstanding import Ledger, OutstandingRun
from smtp_checks.shared.result_output import orphan_output, result_output

log = logging.getLogger("smtp_checks.consumer")


def passive_result(
    identity: CheckIdentity, output: PluginOutput, options: OutputOptions, check_time: float
) -> PassiveResult:
    """The passive result of a run, with the same bytes `smtp-checks check` prints."""
    text, perfdata = output.passive_parts(options)
    return PassiveResult(identity, options.exit_code(output.status), text, perfdata, check_time)


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
            output, options = result_output(result), OutputOptions(mode=result.mode.value)
            items.append(
                (result.run_id, passive_result(result.identity, output, options, result.ended_at))
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
        output = orphan_output(check_queue(run.site), waited)
        log.warning("orphaned: %s run %s, no result after %.0f s", run.check_id, run.run_id, waited)
        return passive_result(run.identity, output, OutputOptions(), now)

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
