"""The compatibility path: the checks as a Celery task, for Celery's own command line
(`SMTP_CHECKS_CONFIG=FILE SMTP_CHECKS_SITE=paris celery -A smtp_checks.workers.celery_compat
worker -Q checks.paris -P threads -c 200`).

Each task hands its check to the process's one event loop (in a thread of its own) and
waits for it, with a pool thread per check in flight: simpler to embed in a Celery setup,
slower and with a less exact `time` under load than `smtp-checks worker` (workers/core.py).
If its outcome cannot be published, the message goes back to the queue (at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from celery import Celery, Task
from celery.exceptions import Reject

from smtp_checks.shared.celery_app import CHECK_TASK, check_queue
from smtp_checks.shared.config import load_config
from smtp_checks.shared.heartbeats import HEARTBEAT_EVERY, Heartbeat
from smtp_checks.shared.redis_client import REDIS_DOWN, RedisAddress, connect_async
from smtp_checks.workers.assembly import broker_and_redis, limiter
from smtp_checks.workers.publisher import ResultPublisher
from smtp_checks.workers.runner import CheckRunner, DeadLetter
from smtp_checks.workers.task_messages import request_from_arguments
from smtp_checks.workers.vitals import WorkerVitals

_T = TypeVar("_T")


class _LoopThread:
    """The process's event loop, in a daemon thread; tasks wait on it from pool threads."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="smtp-checks-loop", daemon=True).start()

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()


def celery_app(config_path: str, site: str) -> Celery:
    config = load_config(config_path)
    app, state = broker_and_redis(config, site)
    loop = _LoopThread()
    # Made on the loop: an asyncio client belongs to the loop that uses it.
    client = loop.run(_connect(state))
    runner = CheckRunner(limiter(config, client))
    publisher = ResultPublisher(
        client, checks=len(config.scheduled_checks()), orphan_grace=config.centreon.orphan_grace
    )
    vitals: dict[str, WorkerVitals] = {}  # by worker name, which only a task knows
    asyncio.run_coroutine_threadsafe(_beat_on(publisher, vitals), loop.loop)

    def run_check(task: Task[..., None], /, *args: object, **kwargs: object) -> None:
        delivery = task.request.delivery_info or {}
        worker = task.request.hostname or "unknown"
        own = vitals.get(worker) or vitals.setdefault(
            worker, WorkerVitals(name=worker, site=site, queue=check_queue(site), concurrency=0)
        )
        try:
            loop.run(
                _check(
                    runner,
                    publisher,
                    request_from_arguments(args, kwargs),
                    worker=worker,
                    redelivered=bool(delivery.get("redelivered")),
                    vitals=own,
                )
            )
        except REDIS_DOWN as error:
            raise Reject(f"cannot publish the outcome: {error}", requeue=True) from error

    app.task(
        name=CHECK_TASK,
        bind=True,
        rate_limit=config.sites[site].rate_limit,
        acks_late=True,
        ignore_result=True,
    )(run_check)
    return app


async def _check(
    runner: CheckRunner,
    publisher: ResultPublisher,
    raw: object,
    *,
    worker: str,
    redelivered: bool,
    vitals: WorkerVitals,
) -> None:
    """One message as workers/core.py handles it: accept, take in the ledger, run, publish,
    with the worker's heartbeat when due (`_beat_on` beats between checks)."""
    vitals.exchanged(started=time.time(), emptied=False)
    accepted = runner.accept(raw, worker=worker, redelivered=redelivered)
    if isinstance(accepted, DeadLetter):
        await publisher.publish([], [accepted], heartbeat=_heartbeat(vitals))
        return
    (current,) = await publisher.ledger.take([accepted.request], worker=worker)
    if not current:  # a newer run of the check was enqueued after it
        vitals.superseded += 1
        await publisher.publish([], superseded=1, heartbeat=_heartbeat(vitals))
        return
    result = await runner.run(accepted)
    vitals.finished(1, time.time())
    await publisher.publish([result], heartbeat=_heartbeat(vitals))


async def _beat_on(publisher: ResultPublisher, vitals: dict[str, WorkerVitals]) -> None:
    """Heartbeats between checks too (a quiet site, or checks slower than ALIVE_FOR, must not
    look dead), and the look for a Redis that lost the last results (a failover). Celery owns
    the broker connection here, so the process's being alive stands for its reaching the
    queue."""
    while True:
        await asyncio.sleep(HEARTBEAT_EVERY)
        with contextlib.suppress(*REDIS_DOWN):  # one look per beat, for every worker name
            await publisher.publish_again_if_forgotten()
        for own in list(vitals.values()):
            own.exchanged(started=time.time(), emptied=False)
            try:
                await publisher.publish([], heartbeat=_heartbeat(own))
            except REDIS_DOWN:
                continue  # the next one, then


def _heartbeat(vitals: WorkerVitals) -> Heartbeat | None:
    now = time.time()
    return vitals.heartbeat(now, in_flight=0) if vitals.heartbeat_due(now) else None


async def _connect(address: RedisAddress) -> Any:
    return connect_async(address)


app = celery_app(os.environ["SMTP_CHECKS_CONFIG"], os.environ["SMTP_CHECKS_SITE"])
