"""Every Redis key the roles share, named in one place: the beat, workers, consumers,
`smtp-checks enqueue` and the benchmarks all find each other's data through `Keys`.

All keys start with one prefix (`smtp-checks:` by default), so one Redis can hold other data
too. They carry no hash tag: the roles use a standalone Redis (or one behind Sentinel), not
Redis Cluster. The check queues themselves are kombu's (`checks.<site>`, shared/celery_app.py).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "smtp-checks:"


@dataclass(frozen=True)
class Keys:
    prefix: str = DEFAULT_PREFIX

    # --- the scheduler ---------------------------------------------------------------------

    @property
    def beat_leader(self) -> str:
        """The lease of the beat that enqueues (scheduler/leader.py)."""
        return f"{self.prefix}beat:leader"

    def slot(self, check_id: str, index: int) -> str:
        """Set (NX) by whoever enqueues slot `index` of a check: no slot twice."""
        return f"{self.slots}{check_id}:{index}"

    @property
    def slots(self) -> str:
        """What every slot key starts with."""
        return f"{self.prefix}sched:"

    @property
    def outstanding(self) -> str:
        """Sorted set: runs awaiting a result, by the time they are overdue."""
        return f"{self.prefix}outstanding"

    @property
    def outstanding_runs(self) -> str:
        """Hash: run id -> the run's ledger entry."""
        return f"{self.prefix}outstanding:runs"

    @property
    def outstanding_pending(self) -> str:
        """Hash: check id -> "<run id> <enqueued at>", its run queued and not yet taken."""
        return f"{self.prefix}outstanding:pending"

    @property
    def outstanding_latest(self) -> str:
        """Hash: check id -> the id of its newest run: an older one is superseded."""
        return f"{self.prefix}outstanding:latest"

    @property
    def outstanding_taken(self) -> str:
        """Hash: run id -> the worker that took it and when (JSON)."""
        return f"{self.prefix}outstanding:taken"

    def adhoc_reply(self, run_id: str) -> str:
        """The short-lived list an ad hoc run's result is posted to."""
        return f"{self.prefix}adhoc:{run_id}"

    # --- the workers -----------------------------------------------------------------------

    def target_sessions(self, target: str) -> str:
        """Sorted set: the live per-target permits of `target` (`address:port`)."""
        return f"{self.prefix}target:{target}:sessions"

    def target_starts(self, target: str) -> str:
        """Sorted set: the sessions started on `target` in the last minute."""
        return f"{self.prefix}target:{target}:starts"

    @property
    def dead_letters(self) -> str:
        """List: the newest messages workers refused as invalid, bounded."""
        return f"{self.prefix}dead_letters"

    # --- every role --------------------------------------------------------------------------

    @property
    def heartbeats(self) -> str:
        """Hash: "<role>:<name>" -> that process's last heartbeat (shared/heartbeats.py)."""
        return f"{self.prefix}heartbeats"

    @property
    def outboxes(self) -> str:
        """Hash: forwarder name -> its deliverer's last delivery and last error (JSON)."""
        return f"{self.prefix}outboxes"

    @property
    def orphans_recent(self) -> str:
        """Sorted set: the runs reported as orphans in the last hour, by when."""
        return f"{self.prefix}orphans:recent"

    @property
    def roundtrips(self) -> str:
        """Hash: check id -> the round trip of that check in progress (shared/roundtrips.py)."""
        return f"{self.prefix}roundtrips"

    @property
    def roundtrip_looks(self) -> str:
        """Sorted set: check ids of round trips by when their next look is due."""
        return f"{self.prefix}roundtrips:looks"

    @property
    def counters(self) -> str:
        """Hash: counters of what the roles did that leaves no other trace (skipped slots,
        superseded runs, results dropped past the backlog bound)."""
        return f"{self.prefix}counters"

    # --- results ---------------------------------------------------------------------------

    @property
    def results(self) -> str:
        """The list workers push CheckResults to and consumers take them from."""
        return f"{self.prefix}results"

    @property
    def results_consumers(self) -> str:
        """Set: the consumers that may hold an in-flight batch of results."""
        return f"{self.prefix}results:consumers"

    def results_inflight(self, consumer: str) -> str:
        return f"{self.prefix}results:inflight:{consumer}"

    def results_lease(self, consumer: str) -> str:
        return f"{self.prefix}results:lease:{consumer}"

    @property
    def results_lease_prefix(self) -> str:
        """What `results_lease` and `results_inflight` names start with (for a script)."""
        return f"{self.prefix}results:"

    # --- the consumer ----------------------------------------------------------------------

    @property
    def states(self) -> str:
        """Hash: (host, service) -> the last state of that service."""
        return f"{self.prefix}states"

    @property
    def states_resend(self) -> str:
        """Sorted set: services by the time their state is due to be sent again."""
        return f"{self.prefix}states:resend"

    @property
    def states_starving(self) -> str:
        """Sorted set: services by the time they count as starved without a real result."""
        return f"{self.prefix}states:starving"

    def outbox(self, forwarder: str) -> str:
        """The list of passive results waiting for `forwarder`."""
        return f"{self.prefix}outbox:{forwarder}"

    def outbox_inflight(self, forwarder: str) -> str:
        return f"{self.outbox(forwarder)}:inflight"

    def outbox_stats(self, forwarder: str) -> str:
        return f"{self.outbox(forwarder)}:stats"

    def outbox_lease(self, forwarder: str) -> str:
        return f"{self.outbox(forwarder)}:lock"


KEYS = Keys()
