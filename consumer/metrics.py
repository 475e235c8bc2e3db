"""The consumer's Prometheus metrics (shared/metrics.py serves them): results by site and
status, what became of them, and each forwarder's deliveries and outbox. Recorded always:
counting costs nothing beside rendering and Redis round trips."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Counter, Gauge, Histogram

RESULTS = Counter(
    "smtp_checks_results_total",
    "Results of configured services read from the result queue, by the status they render to.",
    ["site", "status"],
)
STATE_CHANGES = Counter(
    "smtp_checks_state_changes_total",
    "States forwarded because they changed (orphans and starvation included).",
    ["site"],
)
REFRESHES = Counter(
    "smtp_checks_refreshes_total", "Unchanged states forwarded again for freshness."
)
DUPLICATES = Counter(
    "smtp_checks_duplicates_ignored_total",
    "Results recorded already (a redelivered batch, a check run twice): not forwarded again.",
)
OLD_RESULTS = Counter(
    "smtp_checks_old_results_ignored_total",
    "Results older than the state already recorded for their service: not forwarded.",
)
ORPHANS = Counter(
    "smtp_checks_orphans_total", "Runs that never came back, reported UNKNOWN.", ["site"]
)
STARVED = Counter(
    "smtp_checks_starved_total", "Services reported UNKNOWN for want of results.", ["site"]
)
ROUNDTRIPS_SUPERSEDED = Counter(
    "smtp_checks_roundtrips_superseded_total",
    "Round trips replaced by a newer run of their check before their verdict (an ad hoc run).",
)
ROUNDTRIP_LOOKS_IGNORED = Counter(
    "smtp_checks_roundtrip_looks_ignored_total",
    "Looks into a mailbox for a round trip already over (or replaced): not joined.",
)
UNKNOWN_SERVICES = Counter(
    "smtp_checks_unknown_services_total",
    "Results for a host and service the consumer's config does not have: not forwarded.",
)
INVALID_RESULTS = Counter(
    "smtp_checks_invalid_results_total", "Result messages that did not validate: dropped."
)
LAG = Gauge(
    "smtp_checks_consumer_lag_seconds",
    "How long ago the oldest result of the consumer's last batch ended.",
    multiprocess_mode="livemax",
)
DELIVERED = Counter(
    "smtp_checks_forwarder_delivered_total", "Results Centreon took.", ["forwarder"]
)
FAILURES = Counter(
    "smtp_checks_forwarder_failures_total",
    "Deliveries that failed (Centreon unreachable or refusing); retried with backoff.",
    ["forwarder"],
)
DROPPED = Counter(
    "smtp_checks_forwarder_dropped_total",
    "Results dropped for good: refused by Centreon (unknown service, invalid) or, past the "
    "outbox's bound, refreshes.",
    ["forwarder", "reason"],
)
SENT_ALREADY = Counter(
    "smtp_checks_forwarder_sent_already_total",
    "Results an outbox gave back after their delivery (Redis lost its settling: a "
    "failover), settled again without being sent twice.",
    ["forwarder"],
)
OUTBOX_LENGTH = Gauge(
    "smtp_checks_outbox_length",
    "Results waiting in the forwarder's outbox.",
    ["forwarder"],
    multiprocess_mode="livemax",
)
OUTBOX_OLDEST = Gauge(
    "smtp_checks_outbox_oldest_age_seconds",
    "Age of the oldest result waiting in the outbox (0 when empty).",
    ["forwarder"],
    multiprocess_mode="livemax",
)
DELIVERY_LATENCY = Histogram(
    "smtp_checks_delivery_latency_seconds",
    "From the end of a check (the check time of what is forwarded) to its delivery.",
    ["forwarder"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0),
)


class ForwarderCounters:
    """Turns a forwarder's own running counters (`Forwarder.counters()`) into metrics."""

    def __init__(self, forwarder: str) -> None:
        self._forwarder = forwarder
        self._seen: dict[str, int] = {}

    def update(self, counters: Mapping[str, int]) -> None:
        for name, value in counters.items():
            grown = value - self._seen.get(name, 0)
            if grown <= 0:
                continue
            self._seen[name] = value
            if name == "delivered":
                DELIVERED.labels(self._forwarder).inc(grown)
            elif name.startswith("dropped_"):
                DROPPED.labels(self._forwarder, name.removeprefix("dropped_")).inc(grown)
