"""Publish what a worker's checks produced, from its event loop, in one transaction per batch:
the results to the result queue (bounded: shared/result_queue.py) with the settling of their
runs in the ledger, so that no sweep can ever see a published result's run as an orphan; for
ad hoc runs, the reply list an enqueuer may wait on; the dead letters, to a bounded list; and
the worker's heartbeat and counters, when due. What it published last it publishes again
when Redis may have lost it (workers/recent_results.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import redis.asyncio

from smtp_checks.shared.adhoc_replies import REPLY_TTL
from smtp_checks.shared.heartbeats import Heartbeat
from smtp_checks.shared.keys import KEYS, Keys
from smtp_checks.shared.ledger import DEFAULT_GRACE, WorkerLedger
from smtp_checks.shared.messages import CheckResult
from smtp_checks.shared.result_queue import PUSH_BOUNDED, backlog_bound
from smtp_checks.workers.recent_results import RecentResults
from smtp_checks.workers.runner import DeadLetter

log = logging.getLogger("smtp_checks.worker")

MAX_DEAD_LETTERS = 1000  # the newest are kept: an operator looks at what goes wrong now


class ResultPublisher:
    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        checks: int,
        orphan_grace: float = DEFAULT_GRACE,
        keys: Keys = KEYS,
    ) -> None:
        """`checks`: how many checks the configuration has (the result queue's bound);
        `orphan_grace`: the config's, for the due time of the runs this worker takes."""
        self._client = client
        self._keys = keys
        self._ledger = WorkerLedger(client, keys=keys, grace=orphan_grace)
        self._bound = backlog_bound(checks)
        self._push = client.register_script(PUSH_BOUNDED)
        self._recent = RecentResults(client)

    @property
    def ledger(self) -> WorkerLedger:
        return self._ledger

    async def publish(
        self,
        results: Sequence[CheckResult],
        letters: Sequence[DeadLetter] = (),
        *,
        heartbeat: Heartbeat | None = None,
        superseded: int = 0,
        again: bool = False,
    ) -> None:
        """`results` in order, `letters`, and what else is due, in one round trip. `again`:
        the results were published before and are kept already (`publish_again_if_forgotten`)."""
        if not results and not letters and heartbeat is None and not superseded:
            return
        payloads = [result.model_dump_json() for result in results]
        async with self._client.pipeline(transaction=True) as pipe:
            if payloads:
                await self._push(
                    keys=[self._keys.results, self._keys.counters],
                    args=[self._bound, *payloads],
                    client=pipe,
                )
                self._ledger.settle_in(pipe, [result.run_id for result in results])
            for result, payload in zip(results, payloads, strict=True):
                if result.adhoc and not result.awaits_delivery:  # else the consumer replies
                    reply = self._keys.adhoc_reply(result.run_id)
                    pipe.rpush(reply, payload)
                    pipe.expire(reply, REPLY_TTL)
            if letters:
                pipe.lpush(self._keys.dead_letters, *(letter.as_json() for letter in letters))
                pipe.ltrim(self._keys.dead_letters, 0, MAX_DEAD_LETTERS - 1)
            if superseded:
                pipe.hincrby(self._keys.counters, "superseded", superseded)
            if heartbeat is not None:
                heartbeat.write(pipe, self._keys)
            await pipe.execute()
        if results and not again:
            self._recent.published(list(results), time.time())

    async def publish_again_if_forgotten(self) -> int:
        """Publish again the last results if the Redis answering now may have lost them (a
        failover, a restart); how many. Ad hoc replies go again too (an enqueuer reads
        the first)."""
        results, replication_id = await self._recent.forgotten()
        if replication_id is None:
            return 0
        if results:
            log.warning(
                "Redis is not the one that took the last results (a failover or a restart: "
                "its last writes may be lost): publishing the last %d again",
                len(results),
            )
            await self.publish(results, again=True)
        self._recent.published_again(replication_id)
        return len(results)
