"""A worker's Prometheus metrics (shared/metrics.py serves them), by site.

Recorded only when the worker is measured (`--metrics`, or a child of `smtp-checks run
--metrics`): a worker that nobody scrapes spends nothing on them. Measured, no cost shows
above the noise (1% of a worker's CPU per check at full speed, BENCHMARKS.md, "Metrics"):
the labelled children are looked up once, the in-flight gauge is set once per tick rather
than moved per check.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from smtp_checks.shared.messages import CheckResult, Outcome
from smtp_checks.shared.probe.spec import Mode

# Seconds. The probe's `time`: from a local server's milliseconds to a slow one's timeout.
_TIME_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Seconds waited in the queue or for a per-target permit: none, to a backlog of minutes.
_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)

STARTED = Counter("smtp_checks_checks_started_total", "Checks a worker started.", ["site", "mode"])
FINISHED = Counter(
    "smtp_checks_checks_finished_total",
    "Checks a worker finished, by outcome (success, or why not: dns, refused, network, "
    "timeout, tls, certificate, auth, rejected, protocol, unexpected, credential, throttled).",
    ["site", "mode", "outcome"],
)
IN_FLIGHT = Gauge(
    "smtp_checks_checks_in_flight",
    "Checks running now.",
    ["site"],
    multiprocess_mode="livesum",
)
QUEUE_WAIT = Histogram(
    "smtp_checks_queue_wait_seconds",
    "From the time a run was scheduled for to a worker taking it.",
    ["site"],
    buckets=_WAIT_BUCKETS,
)
PERMIT_WAIT = Histogram(
    "smtp_checks_permit_wait_seconds",
    "Waited for a per-target permit (target_limits) before probing.",
    ["site"],
    buckets=_WAIT_BUCKETS,
)
PROBE_TIME = Histogram(
    "smtp_checks_probe_time_seconds",
    "The plugin's `time` of the checks that reached their server: the server's time only.",
    ["site", "mode"],
    buckets=_TIME_BUCKETS,
)
SUPERSEDED = Counter(
    "smtp_checks_runs_superseded_total",
    "Runs dropped unrun because a newer run of the same check was enqueued (the stale ones:"
    " a late run that is still the newest is run).",
    ["site"],
)
THROTTLED = Counter(
    "smtp_checks_checks_throttled_total",
    "Checks not run for want of a per-target permit before their deadline (UNKNOWN).",
    ["site"],
)
CREDENTIAL_ERRORS = Counter(
    "smtp_checks_credential_errors_total",
    "Checks whose password reference did not resolve on the worker.",
    ["site"],
)
DEAD_LETTERS = Counter(
    "smtp_checks_dead_letters_total",
    "Messages that were not valid check requests, kept aside unrun.",
    ["site"],
)


class WorkerMetrics:
    """What a worker of `site` records; each method is called where the event happens."""

    def __init__(self, site: str) -> None:
        self._site = site
        self._started = {mode: STARTED.labels(site, mode.value) for mode in Mode}
        self._finished: dict[tuple[Mode, Outcome], Counter] = {}
        self._in_flight = IN_FLIGHT.labels(site)
        self._queue_wait = QUEUE_WAIT.labels(site)
        self._permit_wait = PERMIT_WAIT.labels(site)
        self._time = {mode: PROBE_TIME.labels(site, mode.value) for mode in Mode}
        self._superseded = SUPERSEDED.labels(site)
        self._throttled = THROTTLED.labels(site)
        self._credential_errors = CREDENTIAL_ERRORS.labels(site)
        self._dead_letters = DEAD_LETTERS.labels(site)

    def started(self, mode: Mode) -> None:
        self._started[mode].inc()

    def finished(self, result: CheckResult) -> None:
        key = (result.mode, result.outcome)
        counter = self._finished.get(key)
        if counter is None:
            counter = self._finished[key] = FINISHED.labels(
                self._site, result.mode.value, result.outcome.value
            )
        counter.inc()
        self._queue_wait.observe(result.queue_wait)
        self._permit_wait.observe(result.permit_wait)
        if result.outcome.ran and result.time is not None and result.mailbox is None:
            # The SMTP session's `time` (a round trip's look into a mailbox is not one).
            self._time[result.mode].observe(result.time)
        elif result.outcome is Outcome.THROTTLED:
            self._throttled.inc()
        elif result.outcome is Outcome.CREDENTIAL:
            self._credential_errors.inc()

    def in_flight(self, count: int) -> None:
        self._in_flight.set(count)

    def superseded(self) -> None:
        self._superseded.inc()

    def dead_letter(self) -> None:
        self._dead_letters.inc()


class Unmeasured(WorkerMetrics):
    """A worker nobody scrapes: records nothing."""

    def __init__(self, site: str) -> None:
        self._site = site

    def started(self, mode: Mode) -> None:
        pass

    def finished(self, result: CheckResult) -> None:
        pass

    def in_flight(self, count: int) -> None:
        pass

    def superseded(self) -> None:
        pass

    def dead_letter(self) -> None:
        pass
