"""The worker's consumer of `checks.<site>` on a Redis broker: everything on one event loop.

One coroutine does the queue's work in ticks (every 10 ms while checks run or ran in the
last second, every 50 ms when the site is quiet, every 5 ms while a backlog starts), each
tick in two round trips whatever the load:

1. publish the results of the checks finished since the last tick (the result queue, and
   reply lists for ad hoc checks);
2. acknowledge their messages, and take as many new ones as there is room for (the
   concurrency left, and the site's rate limit), each started as a task on the loop.

A result is published before its message is acknowledged: a crash in between runs the check
again (the consumer recognises a run it already has). No thread but the loop's touches
messages: a consumer thread waking for every message took the GIL from the loop, which then
read servers' replies late and counted that wait in `time` (BENCHMARKS.md, "Workers"). One
housekeeping thread wakes every few seconds for kombu's restore of dead workers' messages.
RabbitMQ brokers use workers/check_consumer.py instead.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import redis.asyncio
import redis.exceptions
from celery import Celery
from kombu.exceptions import OperationalError

from smtp_checks.shared.celery_app import check_queue, declare_queue
from smtp_checks.shared.messages import CheckResult
from smtp_checks.workers.check_runner import CheckRunner, DeadLetter
from smtp_checks.workers.check_task import publish_dead_letter
from smtp_checks.workers.rate_limit import RateLimit
from smtp_checks.workers.redis_check_queue import Delivery, RedisCheckQueue
from smtp_checks.workers.result_publisher import ResultPublisher

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
# Redis unreachable, or refusing for a while (full, read-only after a failover, loading):
# retry with a backoff rather than stop the worker.
_REDIS_DOWN = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.BusyLoadingError,
    OSError,
)


class RedisCheckConsumer:
    def __init__(
        self,
        app: Celery,
        site: str,
        runner: CheckRunner,
        publisher: ResultPublisher,
        broker: redis.asyncio.Redis,
        *,
        worker: str,
        concurrency: int,
        rate_limit: str | None,
    ) -> None:
        self.app = app
        self.queue = RedisCheckQueue(broker, check_queue(site))
        self.runner = runner
        self.publisher = publisher
        self.worker = worker
        self.concurrency = concurrency
        self.rate = RateLimit(rate_limit, burst=_IDLE_TICK)
        self.stop_event = threading.Event()  # set from a signal handler or another thread
        self._running: dict[asyncio.Task[None], Delivery] = {}
        self._results: list[CheckResult] = []  # finished, not yet published
        self._acks: list[str] = []  # delivery tags to acknowledge once `_results` are out
        self._busy_at = 0.0  # when a check last ran (time.monotonic())

    def run(self) -> None:
        """Consume until `stop_event`; then let the checks in flight finish (bounded)."""
        housekeeper = threading.Thread(
            target=self._housekeeping, name="smtp-checks-restore", daemon=True
        )
        housekeeper.start()
        try:
            asyncio.run(self._consume())
        finally:
            self.stop_event.set()
            housekeeper.join(timeout=5)  # a restore in progress may finish; nothing waits on it

    async def _consume(self) -> None:
        log.info(
            "%s consuming %s, up to %d checks at once",
            self.worker,
            self.queue.name,
            self.concurrency,
        )
        failures = 0
        while not self.stop_event.is_set():
            tick_started = time.monotonic()
            try:
                more = await self._tick(taking=True)
                failures = 0
            except _REDIS_DOWN as error:
                failures += 1
                delay = min(10.0, 0.5 * 2**failures)
                log.warning("broker unavailable (%s): retrying in %.1f s", error, delay)
                await asyncio.sleep(delay)
                continue
            if more:  # the next slice a _SLICE after this one started
                await asyncio.sleep(max(0.0, tick_started + _SLICE - time.monotonic()))
            else:
                await asyncio.sleep(self._tick_interval())
        await self._drain()

    def _tick_interval(self) -> float:
        """A tick while checks run or ran lately; slower only when the site is quiet."""
        now = time.monotonic()
        if self._running:
            self._busy_at = now
        return _TICK if now - self._busy_at < _IDLE_AFTER else _IDLE_TICK

    async def _tick(self, *, taking: bool) -> bool:
        """Publish results, acknowledge their messages, take new ones; True when the queue
        may hold more than was taken."""
        # Both lists at once, before any await: an ack must never overtake its result.
        results, acks = self._results, self._acks
        self._results, self._acks = [], []
        try:
            await self.publisher.publish_many(results)
        except BaseException:
            self._results[:0], self._acks[:0] = results, acks  # kept, in order
            raise
        room = min(self.concurrency - len(self._running), _MAX_BATCH) if taking else 0
        wanted = self.rate.take(room)
        try:
            taken = await self.queue.settle_and_take(acks, wanted)
        except BaseException:
            self._acks[:0] = acks
            self.rate.refund(wanted)
            raise
        self.rate.refund(wanted - len(taken))
        for delivery in taken:
            self._start(delivery)
        return wanted > 0 and len(taken) == wanted

    def _start(self, delivery: Delivery) -> None:
        if delivery.refusal is not None:
            # Refused unread (a pickle message is never deserialised), as Celery workers do.
            log.warning("refused a message: %s", delivery.refusal)
            if delivery.tag is not None:
                self._acks.append(delivery.tag)
            return
        task = asyncio.create_task(self._check(delivery))
        self._running[task] = delivery
        task.add_done_callback(self._running.pop)

    async def _check(self, delivery: Delivery) -> None:
        try:
            outcome = await self.runner.run(
                delivery.request, worker=self.worker, redelivered=delivery.redelivered
            )
            if isinstance(outcome, DeadLetter):
                await asyncio.to_thread(publish_dead_letter, self.app, outcome)
            else:
                self._results.append(outcome)
        except Exception as error:  # the check's message must not be lost
            log.error("check failed, giving its message back to the queue: %r", error)
            await self._give_back([delivery])
            return
        if delivery.tag is not None:
            self._acks.append(delivery.tag)

    async def _drain(self) -> None:
        """Let the checks in flight finish (bounded) and publish their results; give back
        the messages of those that did not finish."""
        deadline = time.monotonic() + _DRAIN_TIMEOUT
        while self._running and time.monotonic() < deadline:
            await asyncio.sleep(_TICK)
            await self._settle_quietly()
        unfinished = [delivery for task, delivery in self._running.items() if not task.done()]
        for task in list(self._running):
            task.cancel()
        if self._running:  # let the cancelled checks release their permits
            await asyncio.wait(list(self._running), timeout=_RELEASE_TIMEOUT)
        await self._settle_quietly()
        await self._give_back(unfinished)

    async def _settle_quietly(self) -> None:
        try:
            await self._tick(taking=False)
        except _REDIS_DOWN as error:
            log.warning("could not publish results yet: %s", error)

    async def _give_back(self, deliveries: list[Delivery]) -> None:
        try:
            await self.queue.give_back(deliveries)
        except _REDIS_DOWN as error:
            # Still recorded as unacknowledged: restored after the visibility timeout.
            log.warning("could not give back %d checks now (%s)", len(deliveries), error)

    # -- a thread for kombu's side: the queue's declaration, dead workers' messages ------

    def _housekeeping(self) -> None:
        """Declare the queue (for publishers that do not), then restore, every few seconds,
        the unacknowledged messages of workers dead for longer than the visibility timeout.
        kombu's own code does both; it is synchronous, hence this thread, which sleeps."""
        options = self.app.conf.broker_transport_options
        interval = float(options.get("unacked_restore_interval", 10))
        declared = False
        while True:
            try:
                with self.app.connection_for_write() as connection:
                    channel = connection.default_channel
                    if not declared:
                        declare_queue(self.queue.name)(channel).declare()
                        declared = True
                    channel.qos.restore_visible(num=None)  # type: ignore[attr-defined]
            except (OperationalError, *_REDIS_DOWN) as error:
                log.warning("could not restore unacknowledged checks: %s", error)
            if self.stop_event.wait(interval):
                return
