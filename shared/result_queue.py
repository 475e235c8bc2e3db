"""The results queue: CheckResults from workers to consumers, as a Redis list.

Why a Redis list and not a broker queue: one consumer process must take thousands of
results a second, so it takes them in batches. Through kombu's Redis transport every
message costs a BRPOP and two transactions; here a batch costs one script. Workers and
consumers need Redis anyway (per-target limits, state), whatever the check broker is.

Nothing is lost when a consumer dies: a batch moves atomically to that consumer's
in-flight list and is removed only once recorded. A consumer that stops renewing its
lease (killed, hung) has its in-flight batch put back at the head of the queue, in order,
by any live consumer; at once when the dead one was a process of the same machine (a
consumer named by `shared.lease.ProcessName`), else once its lease has expired.
"""

from __future__ import annotations

import redis

from smtp_checks.shared.batch_list import BatchList
from smtp_checks.shared.keys import KEYS, Keys
from smtp_checks.shared.lease import dead_holder
from smtp_checks.shared.messages import CheckResult

# KEYS: queue, consumers set. ARGV: key prefix. Give back the batches of dead consumers.
_RECLAIM = """
local returned = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('EXISTS', ARGV[1] .. 'lease:' .. id) == 0 then
    local inflight = ARGV[1] .. 'inflight:' .. id
    local items = redis.call('LRANGE', inflight, 0, -1)
    for i = #items, 1, -1 do redis.call('LPUSH', KEYS[1], items[i]) end
    returned = returned + #items
    redis.call('DEL', inflight)
    redis.call('SREM', KEYS[2], id)
  end
end
return returned
"""


class ResultQueue:
    def __init__(self, client: redis.Redis, *, keys: Keys = KEYS) -> None:
        self._client = client
        self._keys = keys
        self._list = BatchList(client, keys.results)
        self.key = self._list.key
        self._consumers = keys.results_consumers
        self._reclaim = client.register_script(_RECLAIM)

    def push(self, result: CheckResult) -> None:
        self._client.rpush(self.key, result.model_dump_json())

    def take(self, consumer: str, size: int, *, lease: float) -> list[bytes]:
        """The next batch for `consumer` (its unfinished one first); renews its lease."""
        pipe = self._client.pipeline()
        pipe.set(self._lease(consumer), 1, px=int(lease * 1000))
        pipe.sadd(self._consumers, consumer)
        pipe.execute()
        return self._list.take(self._inflight(consumer), size)

    def done(self, consumer: str) -> None:
        """The batch last taken by `consumer` is recorded."""
        self._list.done(self._inflight(consumer))

    def leave(self, consumer: str) -> None:
        """A clean stop: nothing in flight, no lease to wait for."""
        self.reclaim_from(consumer)

    def reclaim(self) -> int:
        """Put the batches of consumers whose lease expired, or who died on this machine,
        back at the head; how many."""
        members = [
            member.decode() if isinstance(member, bytes) else str(member)
            for member in self._client.smembers(self._consumers)
        ]
        dead = [member for member in members if dead_holder(member)]
        if dead:
            self._client.delete(*(self._lease(name) for name in dead))
        return int(
            self._reclaim(keys=[self.key, self._consumers], args=[self._keys.results_lease_prefix])
        )

    def reclaim_from(self, consumer: str) -> int:
        self._client.delete(self._lease(consumer))
        return self.reclaim()

    def length(self) -> int:
        return int(self._client.llen(self.key))

    def _inflight(self, consumer: str) -> str:
        return self._keys.results_inflight(consumer)

    def _lease(self, consumer: str) -> str:
        return self._keys.results_lease(consumer)
