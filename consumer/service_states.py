"""The last state of every service, in Redis, and the decision to forward a result.

A result is forwarded when its service's status changes, and otherwise at least every
`resend_interval` seconds (Centreon's freshness checking needs a fresh result even when
nothing changed). The decision, the new state and the append to every forwarder's outbox
are one Lua script: a consumer killed between two steps cannot lose a state change or
forward one twice, and two consumers cannot both forward the same result. A result
delivered again (a redelivered batch, a check run twice) is recognised by the run id kept
with the state, and an older result by its check time: no per-run keys pile up in Redis.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import redis

from smtp_checks.consumer.forwarders.base import PassiveResult
from smtp_checks.shared.keys import KEYS, Keys

# KEYS: states hash, resend zset, outbox lists...
# ARGV: service field, passive result JSON (with its run id), now, resend interval.
# Returns 'change', 'refresh', 'same' (kept, not forwarded), 'old' or 'duplicate'.
_RECORD = """
local result = cjson.decode(ARGV[2])
local now, resend = tonumber(ARGV[3]), tonumber(ARGV[4])
local previous = redis.call('HGET', KEYS[1], ARGV[1])
local kind, forwarded_at = 'change', now
if previous then
  previous = cjson.decode(previous)
  if result.run_id == previous.run_id then return 'duplicate' end
  if result.check_time < previous.check_time then return 'old' end
  if result.status == previous.status then
    if now >= previous.forwarded_at + resend then kind = 'refresh'
    else kind, forwarded_at = 'same', previous.forwarded_at end
  end
end
result.kind = kind
result.forwarded_at = forwarded_at
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(result))
redis.call('ZADD', KEYS[2], forwarded_at + resend, ARGV[1])
if kind ~= 'same' then
  result.forwarded_at = nil
  result.run_id = nil
  local item = cjson.encode(result)
  for i = 3, #KEYS do redis.call('RPUSH', KEYS[i], item) end
end
return kind
"""

# KEYS: states hash, resend zset, outbox lists... ARGV: now, resend interval, limit.
# Re-send the current state of services not forwarded for `resend` seconds, stamped now.
_REFRESH = """
local now, resend = tonumber(ARGV[1]), tonumber(ARGV[2])
local fields = redis.call('ZRANGE', KEYS[2], '-inf', now, 'BYSCORE', 'LIMIT', 0, ARGV[3])
for _, field in ipairs(fields) do
  local raw = redis.call('HGET', KEYS[1], field)
  if raw then
    local state = cjson.decode(raw)
    state.forwarded_at = now
    redis.call('HSET', KEYS[1], field, cjson.encode(state))
    redis.call('ZADD', KEYS[2], now + resend, field)
    state.forwarded_at = nil
    state.run_id = nil
    state.check_time = now
    state.kind = 'refresh'
    local item = cjson.encode(state)
    for i = 3, #KEYS do redis.call('RPUSH', KEYS[i], item) end
  else
    redis.call('ZREM', KEYS[2], field)
  end
end
return #fields
"""


def service_field(host: str, service: str) -> str:
    return json.dumps([host, service])


@dataclass(frozen=True)
class Decision:
    result: PassiveResult
    kind: str  # change, refresh, same, old, duplicate


class ServiceStates:
    def __init__(
        self,
        client: redis.Redis,
        outbox_keys: list[str],
        *,
        resend_interval: float,
        keys: Keys = KEYS,
    ) -> None:
        self._client = client
        self._states = keys.states
        self._resend = keys.states_resend
        self._outboxes = outbox_keys
        self.resend_interval = resend_interval
        self._record = client.register_script(_RECORD)
        self._refresh = client.register_script(_REFRESH)

    def record(self, items: list[tuple[str, PassiveResult]], now: float) -> list[Decision]:
        """Record results (each with the id of its run) in one round trip; say what each
        became. Orphan reports use a run id of their own (`orphan:<run>`)."""
        pipe = self._client.pipeline(transaction=False)
        for run_id, result in items:
            payload = {**result.as_json(), "run_id": run_id}
            payload.pop("kind")
            self._record(
                keys=[self._states, self._resend, *self._outboxes],
                args=[
                    service_field(result.host, result.service),
                    json.dumps(payload),
                    now,
                    self.resend_interval,
                ],
                client=pipe,
            )
        kinds = pipe.execute()
        return [
            Decision(result, kind.decode() if isinstance(kind, bytes) else str(kind))
            for (_, result), kind in zip(items, kinds, strict=True)
        ]

    def refresh_due(self, now: float, limit: int = 1000) -> int:
        """Queue a refresh for every service due one; how many were due."""
        return int(
            self._refresh(
                keys=[self._states, self._resend, *self._outboxes],
                args=[now, self.resend_interval, limit],
            )
        )

    def forget_except(self, known: set[tuple[str, str]]) -> int:
        """Drop the state of services no longer configured; how many were dropped."""
        stale = [
            field
            for field in self._client.hkeys(self._states)
            if tuple(json.loads(field)) not in known
        ]
        if stale:
            self._client.hdel(self._states, *stale)
            self._client.zrem(self._resend, *stale)
        return len(stale)

    def current(self, host: str, service: str) -> dict[str, object] | None:
        raw = self._client.hget(self._states, service_field(host, service))
        return None if raw is None else dict(json.loads(raw))
