"""Put check runs on their site's queue: claimed once, recorded in the ledger, then published.

Used by the beat (many runs at a time) and by `smtp-checks enqueue` (one). Three steps, in
this order:

1. **Claim** (scheduled runs only): `SET smtp-checks:sched:<check_id>:<slot> 1 NX EX <2 x
   interval>`. Whoever sets the key owns the slot; anyone else (a second beat, a beat that
   just took over, a restarted beat) skips it. This, not the leader lock, is what guarantees
   that no slot is enqueued twice. The key outlives the slot's stale time, after which
   nobody would enqueue that slot anyway.
2. **Record** the run in the outstanding ledger, so the consumer reports it as orphaned if
   no result comes back. Before publishing, not after: a fast worker's result must never
   arrive before the run is expected (it would be reported as an orphan later). A run
   recorded but never published is reported as an orphan too, which is the truth.
3. **Publish** the CheckRequest with Celery `expires` at its stale time, all runs of a batch
   through one producer and, on Redis, one pipeline (kombu's publish batch).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import redis
from celery import Celery

from smtp_checks.shared.celery_app import CHECK_TASK, check_queue
from smtp_checks.shared.keys import KEYS, Keys
from smtp_checks.shared.messages import CheckRequest
from smtp_checks.shared.outstanding import Ledger

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
        self._client = client
        self._ledger = ledger or Ledger(client, keys=keys)
        self._keys = keys

    def claim(self, slots: Sequence[tuple[str, int, int]]) -> list[bool]:
        """Claim (check_id, slot index, interval) slots in one round trip; True for each
        slot this caller now owns, False for one already enqueued by someone."""
        if not slots:
            return []
        pipe = self._client.pipeline(transaction=False)
        for check_id, index, interval in slots:
            pipe.set(self._keys.slot(check_id, index), 1, nx=True, ex=max(2 * interval, 1))
        return [bool(reply) for reply in pipe.execute()]

    def publish(self, requests: Sequence[CheckRequest]) -> None:
        """Record and publish `requests` (see `publish_runs`)."""
        publish_runs(self.app, self._ledger, requests)


def publish_runs(app: Celery, ledger: Ledger, requests: Sequence[CheckRequest]) -> None:
    """Record `requests` in the ledger, then publish them through one producer; raises if
    the broker or Redis refuses (runs already recorded are then reported as orphans)."""
    if not requests:
        return
    ledger.expect(*requests)
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
                expires=datetime.fromtimestamp(request.stale_at, tz=UTC),
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
