"""The Celery task a worker runs for each message on `checks.<site>`.

The task is a thin shell: it hands the message to the process's CheckRunner on the shared
event loop, then publishes what comes out, a CheckResult to the results queue (Redis) or a
dead letter to `dead_letters`. If publishing fails, the message goes back to the queue (at
least once).
"""

from __future__ import annotations

from typing import Any

import redis
from celery import Celery, Task
from celery.exceptions import Reject
from kombu.exceptions import OperationalError

from smtp_checks.shared.celery_app import CHECK_TASK, DEAD_LETTER_QUEUE, declare_queue
from smtp_checks.workers.check_runner import CheckRunner, DeadLetter, request_payload
from smtp_checks.workers.event_loop import shared_loop
from smtp_checks.workers.result_publisher import ResultPublisher


def register_check_task(
    app: Celery, runner: CheckRunner, publisher: ResultPublisher, *, rate_limit: str | None
) -> Task[..., None]:
    """Register the check task on `app`; `rate_limit` is per worker (Celery's syntax)."""

    def run_check(
        task: Task[..., None], /, request: object = None, *args: object, **kwargs: object
    ) -> None:
        delivery = task.request.delivery_info or {}
        try:
            outcome = shared_loop().run(
                runner.run_and_publish(
                    request_payload([request, *args], kwargs),
                    publisher,
                    worker=task.request.hostname or "unknown",
                    redelivered=bool(delivery.get("redelivered")),
                )
            )
            if isinstance(outcome, DeadLetter):
                publish_dead_letter(app, outcome)
        except (OperationalError, redis.RedisError) as error:
            raise Reject(f"cannot publish the outcome: {error}", requeue=True) from error

    task: Task[..., None] = app.task(
        name=CHECK_TASK, bind=True, rate_limit=rate_limit, acks_late=True, ignore_result=True
    )(run_check)
    return task


def publish_dead_letter(app: Celery, letter: DeadLetter) -> None:
    queue = declare_queue(DEAD_LETTER_QUEUE)
    body: dict[str, Any] = letter.as_json()
    with app.producer_or_acquire() as producer:
        producer.publish(
            body,
            exchange=queue.exchange,
            routing_key=DEAD_LETTER_QUEUE,
            declare=[queue],
            serializer="json",
            retry=True,
        )
