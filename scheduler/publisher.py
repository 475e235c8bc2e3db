"""Put check runs on their site's queue: recorded in the ledger once, then published.

Used by the beat (many runs at a time) and by `smtp-checks enqueue` (one). Two steps, in
this order:

1. **Record** (`Ledger.enqueue`, one script for the whole batch): a scheduled run claims its
   slot (`SET smtp-checks:sched:<check_id>:<slot> 1 NX EX <2 x interval>`: whoever sets the
   key owns the slot; a second beat, a beat that just took over or a restarted one skips
   it; this, not the leader lock, is what guarantees that no slot is enqueued twice), unless
   its check still has a run queued, when the slot is skipped (at most one pending run per
   check, shared/ledger.py). A recorded run is awaited: the consumer reports it if no result
   comes back. Before publishing, not after: a fast worker must never take a run the ledger
   does not know yet. A run recorded but never published (the broker refused it) is still
   awaited, and reported as an orphan if its site is dead, or found lost and replaced by the
   check's next slot if not.
2. **Publish** the recorded runs' CheckRequests, all of a batch through one producer and, on
   Redis, one pipeline (kombu's publish batch). Without an expiry: a run is never dropped
   for being late, only for being superseded.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import redis
from celery import Celery

from smtp_checks.shared.celery_app import CHECK_TASK, check_queue
from smtp_checks.shared.keys import KEYS, Keys
from smtp_checks.shared.ledger import Ledger, NewRun, Verdict
from smtp_checks.shared.messages import CheckRequest

log = logging.getLogger(__name__)

PUBLISH_BATCH = 1000  # Redis commands kombu buffers before it sends a pipeline


class RunPublisher:
    def __init__(
        self,
        app: Celery,
        client: redis.Redis,
        *,
        ledger: Ledger | None = None,
        keys: Keys = KEYS,
    ) -> None:
        self.app = app
        self._ledger = ledger or Ledger(client, keys=keys)
        self._keys = keys

    def scheduled_run(self, request: CheckRequest, index: int, interval: int) -> NewRun:
        """Slot `index` of a check that runs every `interval` seconds, as `request`."""
        return NewRun(request, self._keys.slot(request.check_id, index), max(2 * interval, 1))

    def record(
        self, runs: Sequence[NewRun], *, queue_empty_at: Mapping[str, float] | None = None
    ) -> list[Verdict]:
        """Step 1 for a batch: what the ledger made of each run (raises if Redis refuses)."""
        return self._ledger.enqueue(runs, queue_empty_at=queue_empty_at)

    def publish(self, requests: Sequence[CheckRequest]) -> None:
        """Step 2: publish recorded runs (raises if the broker refuses)."""
        send_runs(self.app, requests)


def publish_runs(app: Celery, ledger: Ledger, requests: Sequence[CheckRequest]) -> None:
    """Record and publish ad hoc `requests`: always enqueued, never claimed against a slot."""
    verdicts = ledger.enqueue([NewRun(request) for request in requests])
    send_runs(app, [r for r, v in zip(requests, verdicts, strict=True) if v is Verdict.ENQUEUED])


def send_runs(app: Celery, requests: Sequence[CheckRequest]) -> None:
    """Publish `requests` through one producer; raises if the broker refuses."""
    if not requests:
        return
    with app.producer_or_acquire() as producer, producer.batch(max_size=PUBLISH_BATCH):
        # Declare each queue once per batch, not once per message (kombu's per-message
        # check costs more than building the message).
        for name in {check_queue(request.site) for request in requests}:
            producer.maybe_declare(app.amqp.queues[name])
        for request in requests:
            app.send_task(
                CHECK_TASK,
                args=[request.model_dump(mode="json")],
                queue=check_queue(request.site),
                producer=producer,
                declare=[],
                # Celery would otherwise repr() the whole request into the headers: slow to
                # build, and the request is in the body anyway.
                argsrepr=f"[{request.check_id} run {request.run_id}]",
                kwargsrepr="{}",
            )
            log.debug(
                "enqueued %s run %s scheduled for %.3f on %s",
                request.check_id,
                request.run_id,
                request.scheduled_for,
                check_queue(request.site),
            )
