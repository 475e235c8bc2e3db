"""Where an ad hoc check's result waits for whoever enqueued it (`enqueue --wait`).

The worker pushes the result of an ad hoc request to a short-lived Redis list named after
its run (the consumer, for a round trip whose message was sent: its verdict comes once the
message is found, or not); the enqueuer blocks on that list. Scheduled checks never use it,
and an ad hoc result still goes to the `results` queue like any other, so Centreon sees it
too.
"""

from __future__ import annotations

import time

import redis

from smtp_checks.shared.keys import KEYS, Keys
from smtp_checks.shared.messages import CheckResult

_POP_SECONDS = 2.0
REPLY_TTL = 600  # seconds a reply waits for a reader that may have given up


class AdhocReplies:
    def __init__(self, client: redis.Redis, *, keys: Keys = KEYS) -> None:
        self._client = client
        self._keys = keys

    def reply(self, result: CheckResult) -> None:
        """Give the enqueuer of ad hoc `result` its result."""
        key = self._keys.adhoc_reply(result.run_id)
        pipe = self._client.pipeline(transaction=True)
        pipe.rpush(key, result.model_dump_json())
        pipe.expire(key, REPLY_TTL)
        pipe.execute()

    def wait(self, run_id: str, timeout: float) -> CheckResult | None:
        """The result of run `run_id`, or None if none came within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        key = self._keys.adhoc_reply(run_id)
        while True:
            # Short blocking pops: a client's socket timeout (redis-py: 5 s by default)
            # must outlast each one, however long the whole wait.
            left = deadline - time.monotonic()
            reply = self._client.blpop([key], timeout=min(max(left, 0.01), _POP_SECONDS))
            if reply is not None:
                self._client.delete(key)
                return CheckResult.model_validate_json(reply[1])
            if left <= _POP_SECONDS:
                return None
