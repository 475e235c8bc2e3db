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

The queue is bounded by the configuration, not by how long no consumer reads it (Redis runs
with `noeviction`: once full, every write fails). Past `backlog_bound(checks)` results (plus
what the last compaction kept, at most twice the bound: the queue never holds more than
three times the bound), the push that crosses it compacts the queue: it keeps every state
change of each check (a result whose status differs from the one before it, of the same
check, in the queue), the newest result of each check and anything it cannot read, in
order, and drops the rest, counted in `smtp-checks:counters` (`results_compacted`). The
consumer, when it comes back, gets the same states in the same order as if it had read
everything, and the newest measurement of each.
Only a check flapping so often that its changes alone pass twice the bound loses its oldest
changes (`results_changes_dropped`), never its newest result. Results of workers of the
previous release carry no status, and are kept whole (they cannot be told apart).
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


# KEYS: queue, counters. ARGV: bound, then the results (JSON). Push; past the bound (plus what
# the last compaction kept, so that a queue that stays long is not compacted at every push),
# compact.
PUSH_BOUNDED = """
for first = 2, #ARGV, 1000 do
  redis.call('RPUSH', KEYS[1], unpack(ARGV, first, math.min(first + 999, #ARGV)))
end
local length, bound = redis.call('LLEN', KEYS[1]), tonumber(ARGV[1])
local kept_last = tonumber(redis.call('HGET', KEYS[2], 'results_compacted_to') or '0')
if length <= bound + kept_last then
  if kept_last > 0 and length <= bound then redis.call('HDEL', KEYS[2], 'results_compacted_to') end
  return 0
end
local items = redis.call('LRANGE', KEYS[1], 0, -1)
local checks, statuses, newest = {}, {}, {}
for i, item in ipairs(items) do
  local ok, result = pcall(cjson.decode, item)
  if ok and type(result) == 'table' and type(result.identity) == 'table'
      and type(result.identity.check_id) == 'string' and type(result.status) == 'number' then
    checks[i], statuses[i] = result.identity.check_id, result.status
    newest[result.identity.check_id] = i
  end
end
local changes, last = {}, {}
local count = 0
for i = 1, #items do
  local check = checks[i]
  if check == nil or newest[check] == i or last[check] ~= statuses[i] then
    changes[i] = true
    count = count + 1
    if check ~= nil then last[check] = statuses[i] end
  end
end
-- Flapping beyond twice the bound: the oldest changes go too, never a check's newest.
local excess, cut = count - 2 * tonumber(ARGV[1]), 0
for i = 1, #items do
  if excess <= 0 then break end
  if changes[i] and checks[i] ~= nil and newest[checks[i]] ~= i then
    changes[i], excess, cut = nil, excess - 1, cut + 1
  end
end
local kept = {}
for i, item in ipairs(items) do
  if changes[i] then kept[#kept + 1] = item end
end
redis.call('DEL', KEYS[1])
for first = 1, #kept, 1000 do
  redis.call('RPUSH', KEYS[1], unpack(kept, first, math.min(first + 999, #kept)))
end
redis.call('HSET', KEYS[2], 'results_compacted_to', #kept)
redis.call('HINCRBY', KEYS[2], 'results_compacted', #items - #kept - cut)
if cut > 0 then redis.call('HINCRBY', KEYS[2], 'results_changes_dropped', cut) end
return #items - #kept
"""


def backlog_bound(checks: int) -> int:
    """How many results the queue holds before it is compacted: three rounds of every check,
    and room for ad hoc runs."""
    return 3 * checks + 1000


class ResultQueue:
    def __init__(
        self, client: redis.Redis, *, keys: Keys = KEYS, bound: int = backlog_bound(10_000)
    ) -> None:
        self._client = client
        self._keys = keys
        self.bound = bound
        self._push = client.register_script(PUSH_BOUNDED)
        self._list = BatchList(client, keys.results)
        self.key = self._list.key
        self._consumers = keys.results_consumers
        self._reclaim = client.register_script(_RECLAIM)

    def push(self, *results: CheckResult) -> int:
        """Append `results`, compacting past the bound; how many older results it dropped."""
        payloads = [result.model_dump_json() for result in results]
        return int(self._push(keys=[self.key, self._keys.counters], args=[self.bound, *payloads]))

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
