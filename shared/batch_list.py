"""A Redis list consumed in batches without losing any: a batch moves atomically to an
in-flight list, and leaves it only when its taker says it is done. Until then, taking again
returns the same batch, first and in order. The result queue and the outboxes are both this.
"""

from __future__ import annotations

import redis

# KEYS: list, in-flight. ARGV: batch size. Returns the batch (an unfinished one first).
_TAKE = """
local inflight = redis.call('LRANGE', KEYS[2], 0, -1)
if #inflight > 0 then return inflight end
local batch = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #batch == 0 then return batch end
redis.call('LTRIM', KEYS[1], #batch, -1)
redis.call('RPUSH', KEYS[2], unpack(batch))
return batch
"""


class BatchList:
    def __init__(self, client: redis.Redis, key: str) -> None:
        self._client = client
        self.key = key
        self._take = client.register_script(_TAKE)

    def take(self, inflight: str, size: int) -> list[bytes]:
        """The batch in `inflight` if any, else the next `size` items moved there."""
        return list(self._take(keys=[self.key, inflight], args=[size]))

    def done(self, inflight: str) -> None:
        self._client.delete(inflight)
