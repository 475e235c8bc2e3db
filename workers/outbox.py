"""A durable, ordered outbox per forwarder, in Redis.

Passive results wait here until their forwarder has delivered them, so Centreon being down
delays results and never drops the latest state. Delivery takes a batch into an in-flight
list and removes it only once delivered: a failure (or a crash) leaves the batch to be
taken again, first, in the same order.

The outbox is bounded. Past `max_length`, refreshes (an unchanged state sent again for
freshness) are dropped first, oldest first; state changes are never dropped. Drops are
counted.
"""

from __future__ import annotations

import json

import redis

from shared.batch_list import BatchList
from workers.forwarders.base import PassiveResult

# KEYS: queue, stats. ARGV: max length. Drop the oldest refreshes while over the bound.
_TRIM = """
local excess = redis.call('LLEN', KEYS[1]) - tonumber(ARGV[1])
if excess <= 0 then return 0 end
local dropped = 0
local items = redis.call('LRANGE', KEYS[1], 0, -1)
for _, item in ipairs(items) do
  if dropped >= excess then break end
  if cjson.decode(item)['kind'] == 'refresh' then
    redis.call('LREM', KEYS[1], 1, item)
    dropped = dropped + 1
  end
end
if dropped > 0 then redis.call('HINCRBY', KEYS[2], 'dropped_refreshes', dropped) end
return dropped
"""

# KEYS: lock. ARGV: token, ttl ms. Take the lock, or extend it if this token holds it.
_HOLD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""


class Outbox:
    def __init__(
        self, client: redis.Redis, name: str, *, max_length: int, prefix: str = "smtp-checks:"
    ) -> None:
        base = f"{prefix}outbox:{name}"
        self.key = base
        self._inflight = f"{base}:inflight"
        self._stats = f"{base}:stats"
        self._lock = f"{base}:lock"
        self._client = client
        self.max_length = max_length
        self._list = BatchList(client, base)
        self._trim = client.register_script(_TRIM)
        self._hold = client.register_script(_HOLD)

    def take(self, size: int) -> list[PassiveResult]:
        """The next batch to deliver: the unfinished one if any, else the oldest `size`."""
        raw = self._list.take(self._inflight, size)
        return [PassiveResult.from_json(json.loads(item)) for item in raw]

    def delivered(self) -> None:
        """The batch last taken reached Centreon."""
        self._list.done(self._inflight)

    def trim(self) -> int:
        """Enforce the bound; the number of refreshes dropped."""
        return int(self._trim(keys=[self.key, self._stats], args=[self.max_length]))

    def length(self) -> int:
        return int(self._client.llen(self.key)) + int(self._client.llen(self._inflight))

    def stats(self) -> dict[str, int]:
        stats = self._client.hgetall(self._stats)
        return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in stats.items()}

    def hold_delivery(self, token: str, ttl: float) -> bool:
        """Whether the deliverer named `token` may deliver now: one per outbox, however many
        consumers run. Call it before each batch; the turn lasts `ttl` seconds."""
        return bool(self._hold(keys=[self._lock], args=[token, int(ttl * 1000)]))
