"""Publish a worker's CheckResults from its event loop: to the result queue, and for ad hoc
checks to the reply list an enqueuer may wait on. One pipelined round trip per result."""

from __future__ import annotations

import redis.asyncio

from shared.adhoc_replies import DEFAULT_PREFIX as REPLY_PREFIX
from shared.adhoc_replies import REPLY_TTL
from shared.messages import CheckResult
from shared.result_queue import DEFAULT_PREFIX as QUEUE_PREFIX


class ResultPublisher:
    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._client = client
        self._queue_key = f"{QUEUE_PREFIX}results"

    async def publish(self, result: CheckResult) -> None:
        payload = result.model_dump_json()
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.rpush(self._queue_key, payload)
            if result.adhoc:
                reply_key = REPLY_PREFIX + result.run_id
                pipe.rpush(reply_key, payload)
                pipe.expire(reply_key, REPLY_TTL)
            await pipe.execute()
