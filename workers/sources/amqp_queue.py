"""A site's check queue on RabbitMQ (or any broker kombu speaks AMQP to), for the worker's
event loop.

kombu channels are not thread-safe and AMQP delivers by push, so one thread owns the broker
connection: it receives the messages (up to `prefetch` unacknowledged at once), and does
every acknowledgement and every give-back the loop asks for. The loop and the thread only
pass messages through two deques. Delivery is at least once: a message is acknowledged
after its result is published; one whose connection was lost is redelivered by the broker.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import amqp.exceptions
from celery import Celery
from kombu import Connection, Consumer, Message
from kombu.exceptions import OperationalError

from smtp_checks.shared.backoff import Backoff
from smtp_checks.shared.celery_app import queue_of
from smtp_checks.shared.errors import SetupError
from smtp_checks.shared.heartbeats import HEARTBEAT_EVERY
from smtp_checks.shared.redis_client import REDIS_DOWN
from smtp_checks.workers.sources.base import TakenMessage
from smtp_checks.workers.task_messages import request_of

log = logging.getLogger("smtp_checks.worker")

# A lost broker connection, whichever the broker: then reconnect.
_CONNECTION_LOST: tuple[type[BaseException], ...] = (
    OperationalError,
    amqp.exceptions.ConnectionError,
    *REDIS_DOWN,
)
_POLL = 0.02  # seconds the thread waits for a message before tending to the loop's requests
_QUEUE_DECLARE = (50, 10)  # AMQP's queue.declare (class 50, method 10)


@dataclass(frozen=True, kw_only=True)
class AmqpMessage(TakenMessage):
    message: Message
    connection: int  # which connection it came on: only that one can settle it


class AmqpQueueSource:
    """`checks.<site>` over kombu's consumer, in a thread of its own (a `QueueSource`)."""

    def __init__(self, app: Celery, queue: str, *, prefetch: int) -> None:
        self._app = app
        self.name = queue
        self.sees_empty_queue = False
        self._queue = queue_of(app, queue)  # classic or quorum, as the app declares it
        self._prefetch = prefetch
        self._inbox: collections.deque[AmqpMessage] = collections.deque()
        self._settling: collections.deque[tuple[bool, AmqpMessage]] = collections.deque()
        self._connection = 0
        self._closed = threading.Event()
        self._stopped = threading.Event()
        self._depth: int | None = None  # ready messages on the broker, read by the thread
        self._declaration_refused: SetupError | None = None  # set: stop the worker, saying why
        self._depth_read_at = 0.0

    # --- the loop's side -------------------------------------------------------------------

    async def exchange(self, done: Sequence[TakenMessage], room: int) -> list[TakenMessage]:
        if self._declaration_refused is not None:
            raise self._declaration_refused
        for message in done:
            if isinstance(message, AmqpMessage):
                self._settling.append((True, message))
        taken: list[TakenMessage] = []
        while self._inbox and len(taken) < room:
            taken.append(self._inbox.popleft())
        return taken

    async def depth(self) -> int | None:
        """The broker's count of ready messages, as the thread last read it (every few
        seconds), plus those received and not yet taken by the loop."""
        if self._depth is None:
            return None
        return self._depth + len(self._inbox)

    async def give_back(self, messages: Sequence[TakenMessage]) -> None:
        for message in messages:
            if isinstance(message, AmqpMessage):
                self._settling.append((False, message))

    # --- the thread's side -----------------------------------------------------------------

    def housekeeping(self) -> None:
        """Consume until `close`, reconnecting as needed; then settle what the loop asked
        and give back what it never took."""
        backoff = Backoff(cap=10.0)
        while not self._closed.is_set():
            try:
                with self._app.connection_for_read() as connection:
                    self._consume(connection)
                    backoff.reset()
            except amqp.exceptions.PreconditionFailed as error:
                if error.method_sig != _QUEUE_DECLARE:  # a consumer timeout, say: reconnect
                    self._lost(error, backoff)
                    continue
                self._declaration_refused = SetupError(
                    f"RabbitMQ refused the queue {self.name} as configured ({error.reply_text}): "
                    "it exists with other arguments, another broker_queue_type? A queue cannot "
                    f"change kind: delete it (rabbitmqctl delete_queue {self.name}) or set "
                    "broker_queue_type to its kind"
                )
                break
            except _CONNECTION_LOST as error:
                self._lost(error, backoff)
        self._stopped.set()

    def _lost(self, error: BaseException, backoff: Backoff) -> None:
        """The connection (or its channel) is gone: wait, then connect again. Deliveries of
        the lost connection cannot be acknowledged on a new one: the broker gives them
        back (their results are recognised by run id)."""
        self._connection += 1
        self._inbox.clear()
        delay = backoff.next_delay()
        log.warning("broker connection lost (%s): reconnecting in %.1f s", error, delay)
        self._closed.wait(delay)

    def _consume(self, connection: Connection) -> None:
        consumer = Consumer(
            connection.channel(),
            queues=[self._queue],
            accept=["json"],
            callbacks=[self._received],
            on_decode_error=self._refused,
            prefetch_count=self._prefetch,
        )
        with consumer:
            while not self._closed.is_set():
                with contextlib.suppress(TimeoutError):  # socket.timeout is TimeoutError
                    connection.drain_events(timeout=_POLL)
                self._settle()
                self._read_depth(connection)
            consumer.cancel()
            self._settle()
            for message in self._inbox:  # taken off the broker, never by the loop
                message.message.requeue()
            self._inbox.clear()

    def _read_depth(self, connection: Connection) -> None:
        """Every few seconds, the queue's ready messages, on a channel of its own (a failed
        passive declaration closes its channel: never the consumer's)."""
        now = time.monotonic()
        if now - self._depth_read_at < HEARTBEAT_EVERY:
            return
        self._depth_read_at = now
        try:
            with connection.channel() as channel:
                declared: Any = self._queue.bind(channel).queue_declare(passive=True)
        except amqp.exceptions.ChannelError:
            self._depth = None
            return
        self._depth = int(declared.message_count)

    def _received(self, body: Any, message: Message) -> None:
        self._inbox.append(
            AmqpMessage(
                request=request_of(message.headers.get("task"), body),
                redelivered=bool(message.delivery_info.get("redelivered")),
                message=message,
                connection=self._connection,
            )
        )

    def _refused(self, message: Message, error: Exception) -> None:
        # A pickle (or any non-JSON) message is refused unread, as Celery workers do.
        log.warning("refused a message with content type %r: %s", message.content_type, error)
        message.reject(requeue=False)

    def _settle(self) -> None:
        while self._settling:
            acknowledged, taken = self._settling.popleft()
            if taken.connection != self._connection:
                continue  # from a connection since lost: the broker redelivers it
            if acknowledged:
                taken.message.ack()
            else:
                taken.message.requeue()

    def close(self) -> None:
        """Stop consuming; returns once the thread has settled everything (bounded)."""
        self._closed.set()
        self._stopped.wait(10)
