"""A durable, ordered outbox per forwarder, in Redis.

Passive results wait here until their forwarder has delivered them, so Centreon being down
delays results and never drops the latest state. Delivery takes a batch into an in-flight
list; each result the forwarder settles (delivered, or dropped for good) is marked done in
that list at once, and the list goes when the whole batch is done. A failure, or a crash,
leaves the batch to be taken again, first, in the same order, without the results already
settled: a result Centreon took is never sent again because a later one failed.

The outbox is bounded. Past `max_length`, refreshes (an unchanged state sent again for
freshness) are dropped first, oldest first; state changes are never dropped. Drops are
counted.

One consumer at a time delivers an outbox: whoever holds its lease (shared/lease.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from smtp_checks.consumer.forwarders.base import PassiveResult
from smtp_checks.shared.batch_list import BatchList
from smtp_checks.shared.keys import KEYS, Keys
from smtp_checks.shared.lease import Lease
from smtp_checks.shared.pipeline_health import outbox_backlog

# What a settled result leaves in the in-flight list: positions never shift, so a batch
# taken again after a crash is the same batch without the results already done.
_SETTLED = ""

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


@dataclass(frozen=True)
class Batch:
    """Results to deliver, each with its place in the in-flight list (`slots`)."""

    results: list[PassiveResult]
    slots: list[int]

    def __bool__(self) -> bool:
        return bool(self.results)


class Outbox:
    def __init__(
        self, client: redis.Redis, name: str, *, max_length: int, keys: Keys = KEYS
    ) -> None:
        self.name = name
        self.key = keys.outbox(name)
        self._inflight = keys.outbox_inflight(name)
        self._stats = keys.outbox_stats(name)
        self._client = client
        self._keys = keys
        self.max_length = max_length
        self.lease = Lease(client, keys.outbox_lease(name))
        self._list = BatchList(client, self.key)
        self._trim = client.register_script(_TRIM)

    def take(self, size: int) -> Batch:
        """The next batch to deliver: what is left of the unfinished one if any, else the
        oldest `size`."""
        raw = self._list.take(self._inflight, size)
        pairs = [(slot, item) for slot, item in enumerate(raw) if item != _SETTLED.encode()]
        return Batch(
            [PassiveResult.from_json(json.loads(item)) for _, item in pairs],
            [slot for slot, _ in pairs],
        )

    def settle(self, slots: Sequence[int]) -> None:
        """The results at these in-flight `slots` are done: never deliver them again."""
        if not slots:
            return
        pipe = self._client.pipeline(transaction=False)
        for slot in slots:
            pipe.lset(self._inflight, slot, _SETTLED)
        pipe.execute()

    def delivered(self) -> None:
        """Every result of the batch last taken is done."""
        self._list.done(self._inflight)

    def trim(self) -> int:
        """Enforce the bound; the number of refreshes dropped."""
        return int(self._trim(keys=[self.key, self._stats], args=[self.max_length]))

    def note(self, forwarder: str, **news: float | str | None) -> None:
        """Record how `forwarder`'s deliveries go (`delivered_at`, `failed_at`, `error`), for
        `smtp-checks status`."""
        raw = self._client.hget(self._keys.outboxes, forwarder)
        health = {**(json.loads(raw) if raw else {}), **news}
        self._client.hset(self._keys.outboxes, forwarder, json.dumps(health))

    def length(self) -> int:
        return int(self._client.llen(self.key)) + int(self._client.llen(self._inflight))

    def backlog(self) -> tuple[int, float | None]:
        """How many results wait, and the check time of the oldest (None: none waits)."""
        return outbox_backlog(self._client, self.name, keys=self._keys)

    def stats(self) -> dict[str, int]:
        stats = self._client.hgetall(self._stats)
        return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in stats.items()}
