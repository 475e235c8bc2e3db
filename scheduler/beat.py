"""The beat: enqueue every configured check at its own slots, on the leader only.

Why not Celery beat or RedBeat: Celery's beat must run exactly once (two duplicate every
run), and RedBeat keeps a copy of the schedule in Redis that has to be kept in step with
the config file, behind a lock that has had double-acquisition bugs. Our schedule is a pure
function of the config (`scheduler/schedule.py`), so there is nothing to store or
synchronise: every beat computes the same slots, and a per-slot NX key
(`scheduler/publisher.py`) makes enqueueing idempotent. The leader lock
(`scheduler/leader.py`) only keeps followers from doing useless work; correctness (no slot
twice) does not depend on it.

The loop keeps a heap of (next due time, check). When a check is due, its *latest* slot is
enqueued unless that slot was already enqueued, or the check's previous run is still queued
(then the slot is skipped and counted: an overloaded site checks less often rather than
queueing runs it cannot start; shared/ledger.py): after any gap (a restart, a takeover, a
stalled process) at most one run per check is owed, never the missed backlog. The sleep
is capped so leadership, reloads and stop requests are noticed within a second.

The config is reloaded on `request_reload()` (SIGHUP) and when the file changes. A config
that does not validate is refused with every problem logged, and the old schedule goes on.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis
from celery import Celery

from smtp_checks.scheduler import metrics
from smtp_checks.scheduler.leader import LeaderLock
from smtp_checks.scheduler.publisher import RunPublisher
from smtp_checks.scheduler.schedule import Cadence, Slot
from smtp_checks.shared.celery_app import config_app
from smtp_checks.shared.config import (
    Config,
    ConfigError,
    ScheduledCheck,
    load_config,
    sending_check_id,
)
from smtp_checks.shared.errors import SmtpChecksError
from smtp_checks.shared.heartbeats import (
    HEARTBEAT_EVERY,
    Heartbeat,
    live_sites,
    read_heartbeats,
    send_heartbeat,
)
from smtp_checks.shared.keys import KEYS, Keys
from smtp_checks.shared.lease import ProcessName
from smtp_checks.shared.ledger import Ledger, NewRun, Verdict
from smtp_checks.shared.messages import CheckRequest
from smtp_checks.shared.metrics import REDIS_RECONNECTS
from smtp_checks.shared.redis_client import state_redis
from smtp_checks.shared.roundtrips import RoundTrips

log = logging.getLogger(__name__)

MAX_SLEEP = 1.0  # seconds: how soon leadership changes, reloads and stops are noticed
# Seconds: runs due within this much of each other go out in one round (one ledger script,
# one producer batch) rather than one wake-up each; it bounds the lateness it adds.
COALESCE = 0.02
BATCH_SIZE = 500  # runs per record/publish round; leadership is re-checked between rounds
RETRY_DELAY = 1.0  # seconds before a run that could not be recorded (Redis down) is tried again
SUMMARY_EVERY = 60.0  # seconds between INFO summaries


@dataclass
class _Entry:
    check: ScheduledCheck
    cadence: Cadence


@dataclass
class _Stats:
    """What the beat did since the last summary line."""

    enqueued: int = 0
    already_enqueued: int = 0  # slots another beat (or an earlier leader) had claimed
    skipped: int = 0  # slots of checks whose previous run was still queued
    failed: int = 0
    lateness: list[float] = field(default_factory=list)

    def line(self, leading: bool, checks: int) -> str:
        if not self.lateness:
            late = "-"
        else:
            ordered = sorted(self.lateness)
            p50 = ordered[len(ordered) // 2]
            p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
            late = f"p50 {p50:.3f} s, p99 {p99:.3f} s, max {ordered[-1]:.3f} s"
        return (
            f"{'leader' if leading else 'follower'}, {checks} checks: {self.enqueued} runs "
            f"enqueued, {self.already_enqueued} already enqueued elsewhere, {self.skipped} "
            f"skipped (the previous run still queued), {self.failed} failed; lateness {late}"
        )


class Beat:
    """Schedules the checks of a config; `run()` until `stop` is set."""

    def __init__(
        self,
        config: Config,
        *,
        client: redis.Redis,
        lock: LeaderLock,
        config_path: str | Path | None = None,
        app: Celery | None = None,
        keys: Keys = KEYS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._client = client
        self._lock = lock
        self._path = Path(config_path) if config_path is not None else None
        self._clock = clock
        # The ledger's due time is the stale time plus the config's orphan grace.
        self._ledger = Ledger(client, keys=keys, grace=config.centreon.orphan_grace)
        self._publisher = RunPublisher(
            app or _app_for(config), client, ledger=self._ledger, keys=keys
        )
        self._entries: dict[str, _Entry] = {}
        self._due: dict[str, float] = {}  # check id -> the due time its heap item carries
        self._heap: list[tuple[float, str]] = []
        self._last: dict[str, float] = {}  # check id -> scheduled time of its last slot done
        self._leading = False
        self._reload_requested = threading.Event()
        self._file_stamp = _stamp(self._path)
        self._stats = _Stats()
        self._next_summary = time.monotonic() + SUMMARY_EVERY
        self._keys = keys
        self._name = str(ProcessName.mine())
        self._started_at = clock()
        self._queue_empty_at: dict[str, float] = {}
        self._sites_read_at = -math.inf  # time.monotonic() of the last look at heartbeats
        self._beat_at = -math.inf
        self._last_enqueue_at: float | None = None
        self._roundtrips = RoundTrips(client, keys=keys)
        self._roundtrip_checks = False  # any round trip configured: looks to enqueue
        self._apply(config.scheduled_checks())

    @property
    def checks(self) -> list[str]:
        """The ids of the checks being scheduled."""
        return list(self._entries)

    def request_reload(self) -> None:
        """Reload the config file at the next turn of the loop (safe from a signal handler)."""
        self._reload_requested.set()

    def run(self, stop: threading.Event) -> None:
        log.info("beat started with %d checks", len(self._entries))
        try:
            while not stop.is_set():
                self._maybe_reload()
                self._turn()
                self._maybe_summarise()
                self._maybe_beat()
                stop.wait(self._sleep_time())
        finally:
            self._lock.release()
            log.info("beat stopped")

    # --- one turn of the loop ---------------------------------------------------------------

    def _turn(self) -> None:
        leading = self._lock.tick()
        if leading and not self._leading:
            # Whatever the previous leader did or did not do, each check owes its latest slot.
            self._reschedule_all(self._clock())
        self._leading = leading
        metrics.LEADER.set(int(leading))
        # Bounded rounds: a burst (start-up, takeover) must not keep the lock from renewal.
        while self._leading and self._heap and self._heap[0][0] <= self._clock():
            self._enqueue_round(self._clock())
            self._leading = self._lock.tick()
        if self._leading and self._roundtrip_checks:
            self._enqueue_looks(self._clock())

    def _enqueue_looks(self, now: float) -> None:
        """The looks into mailboxes that round trips in progress ask for by now, each a run
        on its receiving site's queue (shared/roundtrips.py)."""
        try:
            due = self._roundtrips.take_due(now)
        except redis.RedisError as error:
            log.error("cannot read the round trips' looks from Redis, retrying: %s", error)
            return
        requests = []
        for check_id, token in due:
            entry = self._entries.get(check_id)
            if entry is not None and entry.check.receive is not None:  # else: unconfigured
                requests.append(CheckRequest.receive_step(entry.check, token, scheduled_for=now))
        if not requests:
            return
        try:
            verdicts = self._publisher.record(
                [NewRun(request) for request in requests],
                queue_empty_at=self._site_queues_empty_at(),
            )
        except redis.RedisError as error:
            log.error("cannot record %d looks in Redis, retrying: %s", len(requests), error)
            self._retry_looks(requests, now)
            return
        enqueued = [r for r, v in zip(requests, verdicts, strict=True) if v is Verdict.ENQUEUED]
        # PENDING: a look of the check's previous round trip is still queued: this one goes
        # once that one is taken.
        waiting = [r for r, v in zip(requests, verdicts, strict=True) if v is Verdict.PENDING]
        self._retry_looks(waiting, now)
        if not self._publish(enqueued):
            self._retry_looks(enqueued, now)

    def _retry_looks(self, requests: list[CheckRequest], now: float) -> None:
        with contextlib.suppress(redis.RedisError):  # else the round trips starve, and say so
            for request in requests:
                self._roundtrips.retry(sending_check_id(request.check_id), now + RETRY_DELAY)

    def _enqueue_round(self, now: float) -> None:
        due: list[tuple[_Entry, Slot]] = []
        while self._heap and self._heap[0][0] <= now and len(due) < BATCH_SIZE:
            when, check_id = heapq.heappop(self._heap)
            entry = self._entries.get(check_id)
            if entry is None or self._due.get(check_id) != when:
                continue  # removed or rescheduled by a reload
            slot = entry.cadence.latest_slot(now)
            if self._last.get(check_id) == slot.scheduled_for or _too_late(entry.check, slot, now):
                self._push(check_id, entry.cadence.next_slot(now).scheduled_for)
                continue
            due.append((entry, slot))
        due = self._without_round_trips_in_progress(due, now)
        if not due:
            return
        runs = [self._new_run(entry, slot) for entry, slot in due]
        try:
            verdicts = self._publisher.record(runs, queue_empty_at=self._site_queues_empty_at())
        except redis.RedisError as error:
            log.error("cannot record %d runs in Redis, retrying: %s", len(due), error)
            REDIS_RECONNECTS.labels("beat").inc()
            for entry, _ in due:
                self._push(entry.check.check_id, now + RETRY_DELAY)
            return
        requests: list[CheckRequest] = []
        for (entry, slot), run, verdict in zip(due, runs, verdicts, strict=True):
            self._slot_done(entry, slot)
            if verdict is Verdict.ENQUEUED:
                requests.append(run.request)
            elif verdict is Verdict.PENDING:
                self._skipped(entry)
            else:
                self._stats.already_enqueued += 1
                metrics.CLAIMS_LOST.labels(entry.check.site).inc()
        self._publish(requests)

    def _without_round_trips_in_progress(
        self, due: list[tuple[_Entry, Slot]], now: float
    ) -> list[tuple[_Entry, Slot]]:
        """`due` without the slots of round trips whose previous one has no verdict yet
        (skipped, as the slot of a check whose previous run is still queued)."""
        round_trips = [entry.check for entry, _ in due if entry.check.receive is not None]
        if not round_trips:
            return due
        try:
            busy = self._roundtrips.in_progress(
                round_trips, now, self._config.centreon.orphan_grace
            )
        except redis.RedisError:
            return due  # recording them fails the same way, and they are retried
        kept = []
        for entry, slot in due:
            if entry.check.check_id not in busy:
                kept.append((entry, slot))
                continue
            self._slot_done(entry, slot)
            self._skipped(entry)
        return kept

    def _slot_done(self, entry: _Entry, slot: Slot) -> None:
        """`slot` is dealt with (enqueued, or skipped): the check's next one is due at its
        stale time."""
        self._last[entry.check.check_id] = slot.scheduled_for
        self._push(entry.check.check_id, slot.stale_at)

    def _skipped(self, entry: _Entry) -> None:
        self._stats.skipped += 1
        metrics.RUNS_SKIPPED.labels(entry.check.site).inc()

    def _new_run(self, entry: _Entry, slot: Slot) -> NewRun:
        request = CheckRequest.from_scheduled(
            entry.check, scheduled_for=slot.scheduled_for, stale_at=slot.stale_at
        )
        return self._publisher.scheduled_run(request, slot.index, entry.check.interval)

    def _site_queues_empty_at(self) -> dict[str, float]:
        """When each site's queue was last seen empty, from the workers' heartbeats (read
        once a second at most)."""
        if time.monotonic() - self._sites_read_at >= MAX_SLEEP:
            now = self._clock()
            sites = live_sites(read_heartbeats(self._client, now, keys=self._keys), now)
            self._queue_empty_at = {
                site: workers.queue_empty_at
                for site, workers in sites.items()
                if workers.queue_empty_at is not None
            }
            self._sites_read_at = time.monotonic()
        return self._queue_empty_at

    def _publish(self, requests: list[CheckRequest]) -> bool:
        """Publish recorded runs; False when the broker refused them (logged, counted)."""
        if not requests:
            return True
        try:
            self._publisher.publish(requests)
        except Exception as error:  # the broker or Redis: keep scheduling the next slots
            self._stats.failed += len(requests)
            metrics.unpublished(requests)
            with contextlib.suppress(redis.RedisError):  # else they are lost after a while
                self._ledger.unpublished(requests)
            log.error(
                "could not enqueue %d runs (awaited all the same: reported as orphans if "
                "their site is dead, replaced by their next slot if not): %s",
                len(requests),
                error,
            )
            return False
        sent = self._clock()
        self._last_enqueue_at = sent
        self._stats.enqueued += len(requests)
        self._stats.lateness.extend(sent - request.scheduled_for for request in requests)
        metrics.enqueued(requests, sent)
        return True

    def _sleep_time(self) -> float:
        sleep = MAX_SLEEP
        if self._leading and self._heap:
            sleep = min(sleep, max(self._heap[0][0] - self._clock(), COALESCE))
        sleep = min(sleep, self._lock.next_attempt - time.monotonic())
        return max(sleep, 0.0)

    # --- the schedule -----------------------------------------------------------------------

    def _push(self, check_id: str, when: float) -> None:
        self._due[check_id] = when
        heapq.heappush(self._heap, (when, check_id))

    def _reschedule_all(self, now: float) -> None:
        self._heap = [(now, check_id) for check_id in self._entries]
        heapq.heapify(self._heap)
        self._due = dict.fromkeys(self._entries, now)

    def _apply(self, checks: list[ScheduledCheck]) -> None:
        """Make `checks` the schedule: new ones are due now, removed ones leave, a changed
        interval gives a new cadence, other changes apply from the next run."""
        now = self._clock()
        wanted = {check.check_id: check for check in checks}
        self._roundtrip_checks = any(check.receive is not None for check in checks)
        for check_id in set(self._entries) - set(wanted):
            del self._entries[check_id]
            self._due.pop(check_id, None)
            self._last.pop(check_id, None)
            log.info("stopped scheduling %s (no longer in the config)", check_id)
        for check_id, check in wanted.items():
            entry = self._entries.get(check_id)
            if entry is not None and entry.check.interval == check.interval:
                entry.check = check
                continue
            if entry is not None:
                log.info(
                    "%s: interval %d s -> %d s", check_id, entry.check.interval, check.interval
                )
            self._entries[check_id] = _Entry(check, Cadence(check_id, check.interval))
            self._push(check_id, now)

    # --- reload -----------------------------------------------------------------------------

    def _maybe_reload(self) -> None:
        if self._path is None:
            return
        stamp = _stamp(self._path)
        if not self._reload_requested.is_set() and stamp == self._file_stamp:
            return
        self._reload_requested.clear()
        self._file_stamp = stamp  # an invalid file is reported once, not every second
        self.reload()

    def reload(self) -> bool:
        """Read the config file again; apply it if valid, else log why and keep the old."""
        if self._path is None:
            return False
        try:
            config = load_config(self._path)
        except ConfigError as error:
            for problem in error.problems:
                log.error("config reload refused: %s", problem)
            log.error("config reload refused: the previous schedule stays in force")
            return False
        if state_redis(config) != state_redis(self._config):
            log.warning("redis_url changed: it takes effect when the beat restarts")
        if _broker_settings(config) != _broker_settings(self._config):
            if config.broker_url is None:
                log.error("config reload refused: broker_url is not set")
                return False
            try:
                app = _app_for(config)
            except SmtpChecksError as error:  # a sentinel_password not found here
                log.error("config reload refused: %s", error)
                return False
            self._publisher.app = app
        before = len(self._entries)
        self._config = config
        self._ledger.grace = config.centreon.orphan_grace
        self._apply(config.scheduled_checks())
        log.info("config reloaded: %d checks (was %d)", len(self._entries), before)
        return True

    def _maybe_beat(self) -> None:
        """This beat's heartbeat, every few seconds (a Redis outage only skips one)."""
        now = self._clock()
        if now - self._beat_at < HEARTBEAT_EVERY:
            return
        self._beat_at = now
        heartbeat = Heartbeat(
            role="beat",
            name=self._name,
            at=now,
            started_at=self._started_at,
            figures={
                "leading": int(self._leading),
                "checks": len(self._entries),
                "last_enqueue_at": self._last_enqueue_at,
            },
        )
        try:
            send_heartbeat(self._client, heartbeat, keys=self._keys)
        except redis.RedisError as error:
            log.debug("no heartbeat this time: %s", error)

    def _maybe_summarise(self) -> None:
        if time.monotonic() < self._next_summary:
            return
        self._next_summary = time.monotonic() + SUMMARY_EVERY
        log.info("last minute: %s", self._stats.line(self._leading, len(self._entries)))
        self._stats = _Stats()


def _app_for(config: Config) -> Celery:
    if config.broker_url is None:
        raise ValueError("broker_url is not set: the beat needs a broker")
    return config_app(config)


def _broker_settings(config: Config) -> tuple[object, ...]:
    """What the beat's Celery app is made of: a change makes a new one."""
    return (
        config.broker_url,
        set(config.sites),
        config.visibility_timeout,
        config.broker_queue_type,
        config.sentinel_master,
        config.sentinel_password,
    )


def _stamp(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size


def _too_late(check: ScheduledCheck, slot: Slot, now: float) -> bool:
    """A slot owed after a gap (start-up, takeover) that could not finish before the next
    slot starts: the next slot comes soon enough, and enqueueing both would run the check
    twice in a row. In steady state a slot goes out at its time and is never this late."""
    return slot.stale_at - now < min(check.timeout, check.interval) / 2
