"""The worker: one asyncio event loop runs every check of the process and the queue's work,
whichever the broker (workers/sources/: Redis read in batches from the loop itself,
RabbitMQ through a consumer thread).

The loop works in ticks (every 10 ms while checks run or ran in the last second, every
50 ms when the site is quiet, every 10 ms while a backlog starts), each tick in two round
trips whatever the load:

1. publish the results (and dead letters) of the checks finished since the last tick, with
   the settling of their runs in the ledger, and the worker's heartbeat when due;
2. settle (acknowledge) their messages, and take as many new ones as there is room for
   (the concurrency left, and the site's rate limit);

and a third when it took messages: mark their runs as taken in the ledger, which says which
of them a newer run of the same check has superseded. Those are dropped unrun (counted);
the others start, each as a task on the loop, however late they are.

A result is published before its message is settled: a crash in between runs the check
again (the consumer recognises a run it already has). At shutdown, checks in flight get a
bounded time to finish; the messages of those that did not are given back to the queue.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from smtp_checks.shared.failure_log import FailureLog
from smtp_checks.shared.heartbeats import Heartbeat
from smtp_checks.shared.messages import CheckResult
from smtp_checks.shared.metrics import REDIS_RECONNECTS
from smtp_checks.shared.redis_client import REDIS_DOWN, redis_backoff
from smtp_checks.workers.metrics import Unmeasured, WorkerMetrics
from smtp_checks.workers.publisher import ResultPublisher
from smtp_checks.workers.rate_limit import RateLimit
from smtp_checks.workers.runner import Accepted, CheckRunner, DeadLetter
from smtp_checks.workers.sources.base import QueueSource, TakenMessage
from smtp_checks.workers.vitals import WorkerVitals

log = logging.getLogger("smtp_checks.worker")

_TICK = 0.01  # seconds between ticks while checks run: how long a result may wait
# A backlog starts in slices of at most _MAX_BATCH checks, one every _SLICE seconds (2,500
# a second, more than a process should run: README, Sizing). A thousand checks started in
# one turn of the loop would need it at the same moments all the way through, and their
# replies would wait to be read. Measured with 1,000 starting at once, `time`'s p99 error:
# 6 ms with slices of 25 every 5 ms, 4.1 to 4.3 ms every 10 ms (BENCHMARKS.md, "Workers").
_MAX_BATCH = 25
_SLICE = 0.01
_IDLE_TICK = 0.05  # seconds between looks at the queue once idle for _IDLE_AFTER seconds
_IDLE_AFTER = 1.0
_DRAIN_TIMEOUT = 60.0  # seconds in-flight checks get to finish at shutdown (beyond: given back)
_RELEASE_TIMEOUT = 3.0  # seconds cancelled checks get to release their per-target permits


class Worker:
    """Runs the checks of one queue source until `stop_event` is set."""

    def __init__(
        self,
        source: QueueSource,
        runner: CheckRunner,
        publisher: ResultPublisher,
        *,
        name: str,
        site: str,
        concurrency: int,
        rate_limit: str | None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.source = source
        self.runner = runner
        self.publisher = publisher
        self.name = name
        self.concurrency = concurrency
        self.rate = RateLimit(rate_limit, burst=_IDLE_TICK)
        self.vitals = WorkerVitals(name=name, site=site, queue=source.name, concurrency=concurrency)
        self.metrics = metrics or Unmeasured(site)
        self.stop_event = threading.Event()  # set from a signal handler or another thread
        # Each check in flight: its message and its run.
        self._running: dict[asyncio.Task[None], tuple[TakenMessage, str]] = {}
        self._results: list[CheckResult] = []  # finished, not yet published
        self._letters: list[DeadLetter] = []
        self._done: list[TakenMessage] = []  # to settle once `_results` are out
        self._superseded = 0  # dropped unrun since the last publication
        self._busy_at = 0.0  # when a check last ran (time.monotonic())
        self._ledger_down_logged = False

    def run(self) -> None:
        """Work until `stop_event`; then let the checks in flight finish (bounded)."""
        housekeeper = threading.Thread(
            target=self.source.housekeeping, name="smtp-checks-queue", daemon=True
        )
        housekeeper.start()
        try:
            asyncio.run(self._work())
        finally:
            self.stop_event.set()
            self.source.close()
            housekeeper.join(timeout=5)  # kombu's restore may finish; nothing waits on it

    async def _work(self) -> None:
        log.info(
            "%s consuming %s, up to %d checks at once",
            self.name,
            self.source.name,
            self.concurrency,
        )
        backoff, outages = redis_backoff(), FailureLog(log)
        while not self.stop_event.is_set():
            tick_started = time.monotonic()
            try:
                more = await self._tick(taking=True)
                backoff.reset()
            except REDIS_DOWN as error:
                REDIS_RECONNECTS.labels("worker").inc()
                delay = backoff.next_delay()
                outages.failed(
                    str(error), "broker or Redis unavailable (%s): retrying in %.1f s", error, delay
                )
                await asyncio.sleep(delay)
                continue
            outages.succeeded("broker and Redis reachable again")
            if more:  # the next slice a _SLICE after this one started
                await asyncio.sleep(max(0.0, tick_started + _SLICE - time.monotonic()))
            else:
                await asyncio.sleep(self._tick_interval())
        await self._drain()
        await self._say_stopped()

    def _tick_interval(self) -> float:
        """A tick while checks run or ran lately; slower only when the site is quiet."""
        now = time.monotonic()
        if self._running:
            self._busy_at = now
        return _TICK if now - self._busy_at < _IDLE_AFTER else _IDLE_TICK

    async def _tick(self, *, taking: bool) -> bool:
        """Publish what finished, settle its messages, take new ones; True when the queue may
        hold more than was taken."""
        # All at once, before any await: a message must never be settled before its result
        # is out.
        results, letters, done = self._results, self._letters, self._done
        superseded = self._superseded
        self._results, self._letters, self._done, self._superseded = [], [], [], 0
        try:
            await self.publisher.publish(
                results, letters, heartbeat=await self._heartbeat(), superseded=superseded
            )
        except BaseException:
            self._results[:0], self._letters[:0], self._done[:0] = results, letters, done
            self._superseded += superseded
            raise
        room = min(self.concurrency - len(self._running), _MAX_BATCH) if taking else 0
        wanted = self.rate.take(room)
        started = time.time()
        try:
            taken = await self.source.exchange(done, wanted)
        except BaseException:
            self._done[:0] = done
            self.rate.refund(wanted)
            raise
        emptied = self.source.sees_empty_queue and len(taken) < wanted
        self.vitals.exchanged(started=started, emptied=emptied)
        self.rate.refund(wanted - len(taken))
        await self._admit(taken)
        self.metrics.in_flight(len(self._running))
        return wanted > 0 and len(taken) == wanted

    async def _heartbeat(self) -> Heartbeat | None:
        now = time.time()
        if not self.vitals.heartbeat_due(now):
            return None
        try:
            self.vitals.queue_depth = await self.source.depth()
        except REDIS_DOWN:
            self.vitals.queue_depth = None
        await self.publisher.publish_again_if_forgotten()
        return self.vitals.heartbeat(now, in_flight=len(self._running))

    async def _admit(self, taken: list[TakenMessage]) -> None:
        """Start the taken messages that are valid and not superseded; settle the others."""
        accepted: list[tuple[TakenMessage, Accepted]] = []
        for message in taken:
            if message.refusal is not None:
                # Refused unread (a pickle message is never deserialised), as Celery does.
                log.warning("refused a message: %s", message.refusal)
                self._done.append(message)
                continue
            outcome = self.runner.accept(
                message.request, worker=self.name, redelivered=message.redelivered
            )
            if isinstance(outcome, DeadLetter):
                self._letters.append(outcome)
                self.metrics.dead_letter()
                self._done.append(message)
            else:
                accepted.append((message, outcome))
        for (message, run), current in zip(accepted, await self._take(accepted), strict=True):
            if current:
                self._start(message, run)
                continue
            log.debug("superseded: %s run %s, a newer run was enqueued", run.request.check_id,
                      run.request.run_id)  # fmt: skip
            self.vitals.superseded += 1
            self.metrics.superseded()
            self._superseded += 1
            self._done.append(message)

    async def _take(self, accepted: list[tuple[TakenMessage, Accepted]]) -> list[bool]:
        """The ledger's verdict on each run; all current when the ledger is out of reach
        (fail open: a Redis outage must not stop checks that may well be current)."""
        requests = [run.request for _, run in accepted]
        try:
            verdicts = await self.publisher.ledger.take(requests, worker=self.name)
        except REDIS_DOWN as error:
            if not self._ledger_down_logged:
                log.warning("ledger unavailable, running what was taken: %s", error)
                self._ledger_down_logged = True
            return [True] * len(requests)
        self._ledger_down_logged = False
        return verdicts

    def _start(self, message: TakenMessage, run: Accepted) -> None:
        self.metrics.started(run.request.mode)
        task = asyncio.create_task(self._check(message, run))
        self._running[task] = (message, run.request.run_id)
        task.add_done_callback(self._running.pop)

    async def _check(self, message: TakenMessage, run: Accepted) -> None:
        try:
            result = await self.runner.run(run)
        except Exception as error:  # the check's message must not be lost
            log.error("check failed, giving its message back to the queue: %r", error)
            await self._give_back([(message, run.request.run_id)])
            return
        self._results.append(result)
        self.metrics.finished(result)
        self.vitals.finished(1, time.time())
        self._done.append(message)

    async def _drain(self) -> None:
        """Let the checks in flight finish (bounded) and publish their results; give back
        the messages of those that did not finish."""
        deadline = time.monotonic() + _DRAIN_TIMEOUT
        while self._running and time.monotonic() < deadline:
            await asyncio.sleep(_TICK)
            await self._settle_quietly()
        unfinished = [taken for task, taken in self._running.items() if not task.done()]
        for task in list(self._running):
            task.cancel()
        if self._running:  # let the cancelled checks release their permits
            await asyncio.wait(list(self._running), timeout=_RELEASE_TIMEOUT)
        await self._settle_quietly()
        await self._give_back(unfinished)

    async def _say_stopped(self) -> None:
        """Mark this worker stopped in its heartbeat, so that its site counts one worker
        fewer now rather than `ALIVE_FOR` seconds later (its queued runs then show as
        orphans if it was the last)."""
        try:
            await self.publisher.publish([], heartbeat=self.vitals.last_heartbeat(time.time()))
        except REDIS_DOWN as error:
            log.warning("could not say this worker stopped: %s", error)

    async def _settle_quietly(self) -> None:
        try:
            await self._tick(taking=False)
        except REDIS_DOWN as error:
            log.warning("could not publish results yet: %s", error)

    async def _give_back(self, unfinished: list[tuple[TakenMessage, str]]) -> None:
        """Put messages back on the queue, their runs no longer taken by this worker (so
        that none is reported as the orphan of a worker that died)."""
        if not unfinished:
            return
        messages = [message for message, _ in unfinished]
        try:
            await self.publisher.ledger.untake(
                [run_id for _, run_id in unfinished], worker=self.name
            )
            await self.source.give_back(messages)
        except REDIS_DOWN as error:
            # Still recorded as unacknowledged: restored after the visibility timeout.
            log.warning("could not give back %d checks now (%s)", len(messages), error)
