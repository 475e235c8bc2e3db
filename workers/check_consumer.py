"""The worker's consumer of `checks.<site>` on RabbitMQ: one thread takes messages from the
broker, one asyncio loop runs every check of the process. No thread per check. (On a Redis
broker, workers/redis_consumer.py reads the queue from the loop itself, in batches.)

Why not Celery's pool: with a pool thread blocked on each check in flight, hundreds of
threads wake together when a wave of checks ends and fight the event loop for the GIL; the
loop then reads servers' replies late and `time` grows by hundreds of milliseconds (p99 at
1,000 in flight, BENCHMARKS.md). Here only two threads are busy: this consumer thread,
which owns the broker connection (kombu channels are not thread-safe: every ack happens
here), and the loop, which probes and publishes results.

Messages are the Celery task messages the beat publishes (protocol 2), so the queues stay
Celery queues. Delivery is at least once: a message is acknowledged after its result is
published; one whose result could not be published is given back to the queue.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import amqp.exceptions
import redis.exceptions
from celery import Celery
from kombu import Connection, Consumer, Message
from kombu.exceptions import OperationalError

from smtp_checks.shared.celery_app import check_queue, declare_queue
from smtp_checks.shared.messages import CheckResult
from smtp_checks.workers.check_runner import CheckRunner, DeadLetter, task_payload
from smtp_checks.workers.check_task import publish_dead_letter
from smtp_checks.workers.event_loop import LoopThread
from smtp_checks.workers.rate_limit import RateLimit
from smtp_checks.workers.result_publisher import ResultPublisher

log = logging.getLogger("smtp_checks.worker")

# A lost broker connection, whichever the broker: then reconnect.
_CONNECTION_LOST = (
    OperationalError,
    OSError,
    redis.exceptions.ConnectionError,
    amqp.exceptions.ConnectionError,
)
_POLL = 0.02  # seconds the consumer waits for a message before tending to acks
_DRAIN_TIMEOUT = 60.0  # seconds in-flight checks get to finish at shutdown (beyond: redelivered)


@dataclass
class _Delivery:
    message: Message
    raw: object


class CheckConsumer:
    def __init__(
        self,
        app: Celery,
        site: str,
        runner: CheckRunner,
        publisher: ResultPublisher,
        *,
        worker: str,
        concurrency: int,
        rate_limit: str | None,
    ) -> None:
        self.app = app
        self.queue = declare_queue(check_queue(site))
        self.runner = runner
        self.publisher = publisher
        self.worker = worker
        self.concurrency = concurrency
        self.rate = RateLimit(rate_limit)
        self.loop = LoopThread()
        self.stop_event = threading.Event()
        self._waiting: collections.deque[_Delivery] = collections.deque()
        self._running: dict[int, _Delivery] = {}
        self._done: collections.deque[tuple[int, Future[CheckResult | DeadLetter]]] = (
            collections.deque()
        )
        self._sequence = 0

    # -- the consumer thread -------------------------------------------------------------

    def run(self) -> None:
        """Consume until `stop_event`, reconnecting as needed; then finish what is in hand."""
        failures = 0
        while not self.stop_event.is_set():
            try:
                with self.app.connection_for_read() as connection:
                    self._consume(connection)
                    failures = 0
            except _CONNECTION_LOST as error:
                failures += 1
                # Deliveries of the lost connection cannot be acknowledged on a new one: the
                # broker gives them back (their results are recognised by run id).
                self._waiting.clear()
                self._running.clear()
                delay = min(10.0, 0.5 * 2**failures)
                log.warning("broker connection lost (%s): reconnecting in %.1f s", error, delay)
                self.stop_event.wait(delay)

    def _consume(self, connection: Connection) -> None:
        consumer = Consumer(
            connection.channel(),
            queues=[self.queue],
            accept=["json"],
            callbacks=[self._on_message],
            on_decode_error=self._on_decode_error,
            prefetch_count=self.concurrency,
        )
        with consumer:
            log.info(
                "%s consuming %s, up to %d checks at once",
                self.worker,
                self.queue.name,
                self.concurrency,
            )
            while not self.stop_event.is_set():
                with contextlib.suppress(TimeoutError):  # socket.timeout is TimeoutError
                    connection.drain_events(timeout=_POLL)
                self._start_waiting()
                self._settle_done()
            consumer.cancel()
            self._shutdown()

    def _on_message(self, body: Any, message: Message) -> None:
        raw = task_payload(message.headers.get("task"), body)
        self._waiting.append(_Delivery(message, raw))
        self._start_waiting()

    def _on_decode_error(self, message: Message, error: Exception) -> None:
        # A pickle (or any non-JSON) message is refused unread, as Celery workers do.
        log.warning("refused a message with content type %r: %s", message.content_type, error)
        message.reject(requeue=False)

    def _start_waiting(self) -> None:
        while self._waiting and len(self._running) < self.concurrency and self.rate.take():
            delivery = self._waiting.popleft()
            self._sequence += 1
            key = self._sequence
            self._running[key] = delivery
            redelivered = bool(delivery.message.delivery_info.get("redelivered"))
            future = asyncio.run_coroutine_threadsafe(
                self._check(delivery.raw, redelivered), self.loop.loop
            )
            future.add_done_callback(self._on_done(key))

    def _on_done(self, key: int) -> Callable[[Future[CheckResult | DeadLetter]], None]:
        """A callback for the loop thread: it only queues the outcome for this thread."""

        def done(future: Future[CheckResult | DeadLetter]) -> None:
            self._done.append((key, future))

        return done

    def _settle_done(self) -> None:
        while self._done:
            key, future = self._done.popleft()
            delivery = self._running.pop(key, None)
            if delivery is None:  # from a connection since lost
                continue
            error = future.exception()
            outcome = None if error is not None else future.result()
            if isinstance(outcome, DeadLetter):
                try:
                    publish_dead_letter(self.app, outcome)
                except OperationalError:
                    delivery.message.requeue()
                    continue
            if error is not None:
                log.error("check failed to publish its result, giving it back: %s", error)
                delivery.message.requeue()
            else:
                delivery.message.ack()

    def _shutdown(self) -> None:
        """Give back what has not started; let what runs finish (bounded), and settle it."""
        for delivery in self._waiting:
            delivery.message.requeue()
        self._waiting.clear()
        deadline = time.monotonic() + _DRAIN_TIMEOUT
        while self._running and time.monotonic() < deadline:
            time.sleep(_POLL)
            self._settle_done()
        for delivery in self._running.values():
            delivery.message.requeue()
        self._running.clear()

    # -- the loop ----------------------------------------------------------------------------

    async def _check(self, raw: object, redelivered: bool) -> CheckResult | DeadLetter:
        return await self.runner.run_and_publish(
            raw, self.publisher, worker=self.worker, redelivered=redelivered
        )
