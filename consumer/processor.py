"""What the consumer does with results: render each CheckResult as Centreon output, track
the state of every service, and queue what must reach Centreon (state changes, freshness
refreshes, and the synthetic UNKNOWNs: orphans and starvation) in each forwarder's outbox.
Free of the queue that brings them (consumer/result_reader.py): a batch recorded twice
forwards nothing twice.

Two synthetic UNKNOWNs, each for something an operator must see:

- an **orphan**, for a run that produced nothing: taken by a worker that never answered, or
  still queued on a site with no live worker (shared/ledger.py decides which runs);
- **starvation**, once, for a service without a real result for `max(3 x interval,
  resend_interval)` while its site has live workers: it says why, in its site's figures
  from the workers' heartbeats (the checks per minute its workers run against those its
  config asks for, the queue, the workers), and the next real result ends it. Not looked
  for while the consumer is behind with its results: the missing results may be the ones
  it has not read yet.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping

from pydantic import ValidationError

from smtp_checks.consumer import metrics
from smtp_checks.consumer.forwarders.base import PassiveResult
from smtp_checks.consumer.roundtrip_join import RoundTripJoin
from smtp_checks.consumer.self_check import SelfCheck
from smtp_checks.consumer.service_states import Decision, Observation, ServiceStates
from smtp_checks.shared.celery_app import check_queue
from smtp_checks.shared.config import Config, ScheduledCheck, asked_per_minute
from smtp_checks.shared.heartbeats import SiteWorkers
from smtp_checks.shared.identity import CheckIdentity
from smtp_checks.shared.ledger import Ledger, Orphan
from smtp_checks.shared.messages import CheckResult
from smtp_checks.shared.output.options import OutputOptions
from smtp_checks.shared.output.plugin_output import PluginOutput
from smtp_checks.shared.result_output import orphan_output, result_output, starved_output

log = logging.getLogger("smtp_checks.consumer")


def passive_result(
    identity: CheckIdentity, output: PluginOutput, options: OutputOptions, check_time: float
) -> PassiveResult:
    """The passive result of a run, with the same bytes `smtp-checks check` prints."""
    text, perfdata = output.passive_parts(options)
    return PassiveResult(identity, options.exit_code(output.status), text, perfdata, check_time)


def starve_after(check: ScheduledCheck, resend_interval: float) -> float:
    """Seconds without a real result after which a service is starved."""
    return max(3.0 * check.interval, resend_interval)


Sites = Callable[[float], Mapping[str, SiteWorkers]]
OVERDUE_SWEEP_EVERY = 30.0  # seconds between looks for round trips past their last look


class ResultProcessor:
    """Everything the consumer does with results, free of the queue that brings them."""

    def __init__(
        self,
        config: Config,
        states: ServiceStates,
        ledger: Ledger,
        *,
        sites: Sites = lambda now: {},
        on_forward: Callable[[], None] = lambda: None,
        self_check: SelfCheck | None = None,
        roundtrips: RoundTripJoin | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`sites`: the sites with live workers at a time (from the heartbeats);
        `self_check`: the pipeline's own services, recorded as they fall due;
        `roundtrips`: joins the two steps of round trips (None: none configured)."""
        checks = config.scheduled_checks()
        self.known = {(check.host, check.service): check for check in checks}
        self._asked_per_minute = asked_per_minute(checks)
        self.states = states
        self.ledger = ledger
        self.counts: Counter[str] = Counter()
        self.lag = 0.0  # seconds since the oldest result of the last batch ended
        self._sites = sites
        self._on_forward = on_forward
        self._self_check = self_check
        self._roundtrips = roundtrips
        self._next_overdue_sweep = 0.0
        self._clock = clock

    def handle(self, payloads: list[bytes]) -> list[Decision]:
        """Record a batch of results as they come from the result queue (JSON)."""
        observations: list[Observation] = []
        verdicts: list[CheckResult] = []  # of round trips: over once recorded
        unsettled: list[str] = []
        now, oldest = self._clock(), math.inf
        for payload in payloads:
            result = self._parse(payload)
            if result is None:
                continue
            oldest = min(oldest, result.ended_at)
            if result.status is None:  # a worker of version 1: it did not settle its run
                unsettled.append(result.run_id)
            if (result.host, result.service) not in self.known:
                self.counts["unknown_service"] += 1
                metrics.UNKNOWN_SERVICES.inc()
                log.warning(
                    "result for unconfigured service %r on %r: not forwarded",
                    result.service,
                    result.host,
                )
                continue
            if self._roundtrips is not None:
                joined = self._roundtrips.step(result)
                if joined is None:  # the round trip goes on
                    continue
                if joined.delivery is not None:
                    verdicts.append(joined)
                result = joined
            observations.append(self._observe(result))
        self.lag = max(0.0, now - oldest) if oldest < math.inf else 0.0
        self.ledger.settle(unsettled)
        decisions = self._record(observations)
        if self._roundtrips is not None:
            self._roundtrips.ended(verdicts)
        return decisions

    def sweep(self, *, behind: bool = False) -> list[Decision]:
        """Report orphans, queue refreshes of states not sent lately, unless `behind`
        with the results report starved services, and record the self-check when due."""
        now = self._clock()
        sites = self._sites(now)
        orphans = [
            orphan
            for orphan in self.ledger.sweep(now, set(sites))
            if (orphan.run.host, orphan.run.service) in self.known
        ]
        decisions = self._record(
            [
                Observation(f"orphan:{orphan.run.run_id}", self._orphan(orphan, now), "orphan")
                for orphan in orphans
            ]
        )
        if self._roundtrips is not None:
            for orphan in orphans:
                self._roundtrips.orphaned(orphan.run.check_id, orphan.run.run_id)
        decisions += self._overdue_round_trips(now)
        refreshed = self.states.refresh_due(now)
        if refreshed:
            self.counts["refresh"] += refreshed
            metrics.REFRESHES.inc(refreshed)
            self._on_forward()
        if not behind:
            decisions += self._starved(now, sites)
        if self._self_check is not None and self._self_check.due(now):
            decisions += self._record(self._self_check.observations(now))
        return decisions

    def _observe(self, result: CheckResult) -> Observation:
        output, options = result_output(result), OutputOptions(mode=result.mode.value)
        metrics.RESULTS.labels(result.site, output.status.name).inc()
        passive = passive_result(result.identity, output, options, result.ended_at)
        return Observation(result.run_id, passive)

    def _overdue_round_trips(self, now: float) -> list[Decision]:
        """Round trips past their last possible look end UNKNOWN (looked for now and then:
        it reads every round trip in progress)."""
        if self._roundtrips is None or now < self._next_overdue_sweep:
            return []
        self._next_overdue_sweep = now + OVERDUE_SWEEP_EVERY
        verdicts = self._roundtrips.overdue(now, self.ledger.grace)
        decisions = self._record([self._observe(verdict) for verdict in verdicts])
        self._roundtrips.ended(verdicts)
        return decisions

    def _orphan(self, orphan: Orphan, now: float) -> PassiveResult:
        run = orphan.run
        self.counts["orphan"] += 1
        metrics.ORPHANS.labels(run.site).inc()
        waited = now - run.scheduled_for
        taken_for = now - orphan.taken_at if orphan.taken_at is not None else 0.0
        output = orphan_output(
            check_queue(run.site), waited, taken_by=orphan.taken_by, taken_for=taken_for
        )
        log.warning(
            "orphaned: %s run %s, no result after %.0f s%s",
            run.check_id,
            run.run_id,
            waited,
            f" (taken by {orphan.taken_by})" if orphan.taken_by else "",
        )
        return passive_result(run.identity, output, OutputOptions(), now)

    def _starved(self, now: float, sites: Mapping[str, SiteWorkers]) -> list[Decision]:
        observations, dead_sites = [], []
        for host, service, silent_since in self.states.starving(now):
            check = self.known.get((host, service))
            if check is None:
                continue  # no longer configured: forgotten at the next start
            workers = sites.get(check.site)
            if workers is None:  # a dead site shows as orphans; starvation is for live ones
                dead_sites.append((host, service))
                continue
            output = starved_output(
                now - silent_since,
                check.site,
                runs_per_minute=workers.checks_per_minute,
                asked_per_minute=self._asked_per_minute.get(check.site, 0.0),
                queue_depth=workers.queue_depth,
                workers=workers.workers,
            )
            identity = check.identity(f"starved:{now}", scheduled_for=now, stale_at=now)
            passive = passive_result(identity, output, OutputOptions(), now)
            observations.append(Observation(identity.run_id, passive, "starved"))
        self.states.postpone_starvation(dead_sites, now)
        decisions = self._record(observations)
        for decision in decisions:
            if decision.kind != "old":
                self.counts["starved"] += 1
                metrics.STARVED.labels(decision.result.site).inc()
                log.warning("starved: %s %s", decision.result.host, decision.result.output)
        return decisions

    def _record(self, observations: list[Observation]) -> list[Decision]:
        if not observations:
            return []
        decisions = self.states.record(observations, self._clock())
        for decision in decisions:
            self.counts[decision.kind] += 1
            _count_decision(decision)
        if any(d.kind in ("change", "refresh") for d in decisions):
            self._on_forward()
        return decisions

    def _parse(self, payload: bytes) -> CheckResult | None:
        try:
            return CheckResult.model_validate_json(payload)
        except ValidationError as error:
            self.counts["invalid"] += 1
            metrics.INVALID_RESULTS.inc()
            log.warning("dropped an invalid result message: %s", error.errors(include_input=False))
            return None


def _count_decision(decision: Decision) -> None:
    if decision.kind == "change":
        metrics.STATE_CHANGES.labels(decision.result.site).inc()
    elif decision.kind == "refresh":
        metrics.REFRESHES.inc()
    elif decision.kind == "duplicate":
        metrics.DUPLICATES.inc()
    elif decision.kind == "old":
        metrics.OLD_RESULTS.inc()
