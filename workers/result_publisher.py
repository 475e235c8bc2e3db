"""Publish a worker's CheckResults from its event loop: to the result queue, and for ad hoc
checks to the reply list an enqueuer may wait on. One pipelined round trip per batch."""

from __future__ import annotations

import redis.asyncio

from smtp_checks.shared.adhoc_replies import REPLY_TTL, reply_key
from smtp_checks.shared.messages import CheckResult
from smtp_checks.shared.result_queue import results_key


class ResultPublisher:
    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._client = client
        self._queue_key = results_key()

    async def publish(self, result: CheckResult) -> None:
        await self.publish_many([result])

    async def publish_many(self, results: list[CheckResult]) -> None:
        """`results`, in order, in one pipelined round trip."""
        if not results:
            return
        payloads = [result.model_dump_json() for result in results]
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.rpush(self._queue_key, *payloads)
            for result, payload in zip(results, payloads, strict=True):
                if result.adhoc:
                    reply = reply_key(result.run_id)
                    pipe.rpush(reply, payload)
                    pipe.expire(reply, REPLY_TTL)
            await pipe.execute()
