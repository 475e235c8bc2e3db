"""Publish what a worker's checks produced, from its event loop, in one pipelined round trip
per batch: the results to the result queue (and, for ad hoc checks, to the reply list an
enqueuer may wait on), and the dead letters to a bounded list."""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio

from smtp_checks.shared.adhoc_replies import REPLY_TTL
from smtp_checks.shared.keys import KEYS, Keys
from smtp_checks.shared.messages import CheckResult
from smtp_checks.workers.runner import DeadLetter

MAX_DEAD_LETTERS = 1000  # the newest are kept: an operator looks at what goes wrong now


class ResultPublisher:
    def __init__(self, client: redis.asyncio.Redis, *, keys: Keys = KEYS) -> None:
        self._client = client
        self._keys = keys

    async def publish(
        self, results: Sequence[CheckResult], letters: Sequence[DeadLetter] = ()
    ) -> None:
        """`results` in order, and `letters`, in one pipelined round trip."""
        if not results and not letters:
            return
        payloads = [result.model_dump_json() for result in results]
        async with self._client.pipeline(transaction=False) as pipe:
            if payloads:
                pipe.rpush(self._keys.results, *payloads)
            for result, payload in zip(results, payloads, strict=True):
                if result.adhoc:
                    reply = self._keys.adhoc_reply(result.run_id)
                    pipe.rpush(reply, payload)
                    pipe.expire(reply, REPLY_TTL)
            if letters:
                pipe.lpush(self._keys.dead_letters, *(letter.as_json() for letter in letters))
                pipe.ltrim(self._keys.dead_letters, 0, MAX_DEAD_LETTERS - 1)
            await pipe.execute()
