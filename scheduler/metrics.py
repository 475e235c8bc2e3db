"""The beat's Prometheus metrics (shared/metrics.py serves them), by site where a run has
one. Recorded always: the beat's few thousand runs a minute cost nothing to count."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from smtp_checks.shared.messages import CheckRequest

# A run enqueued more than this many seconds after its slot is a catch-up: owed after a
# gap (a start, a takeover, a stall). In steady state runs go out within milliseconds.
CATCH_UP_AFTER = 1.0

RUNS_ENQUEUED = Counter(
    "smtp_checks_runs_enqueued_total", "Runs the leading beat put on a site's queue.", ["site"]
)
LATENESS = Histogram(
    "smtp_checks_enqueue_lateness_seconds",
    "From a run's slot to its publication on the queue.",
    ["site"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0),
)
CATCH_UP_RUNS = Counter(
    "smtp_checks_catch_up_runs_total",
    f"Runs enqueued over {CATCH_UP_AFTER:g} s after their slot: owed after a gap.",
    ["site"],
)
RUNS_SKIPPED = Counter(
    "smtp_checks_runs_skipped_total",
    "Slots not enqueued because the check's previous run was still queued (overload), or "
    "its previous round trip still had no verdict.",
    ["site"],
)
RUNS_UNPUBLISHED = Counter(
    "smtp_checks_runs_unpublished_total",
    "Runs recorded that the broker refused or could not take.",
    ["site"],
)
CLAIMS_LOST = Counter(
    "smtp_checks_claims_lost_total",
    "Slots this beat found already claimed by another beat (or an earlier leader).",
    ["site"],
)
LEADER = Gauge(
    "smtp_checks_beat_leader",
    "1 while this beat holds the leader lock and enqueues, else 0.",
    multiprocess_mode="livemax",
)


def enqueued(requests: Iterable[CheckRequest], sent_at: float) -> None:
    for request in requests:
        lateness = sent_at - request.scheduled_for
        RUNS_ENQUEUED.labels(request.site).inc()
        LATENESS.labels(request.site).observe(lateness)
        if lateness > CATCH_UP_AFTER:
            CATCH_UP_RUNS.labels(request.site).inc()


def unpublished(requests: Iterable[CheckRequest]) -> None:
    for request in requests:
        RUNS_UNPUBLISHED.labels(request.site).inc()
