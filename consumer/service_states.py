"""The last state of every service, in Redis, and the decision to forward a result.

A result is forwarded when its service's status changes, and otherwise at least every
`resend_interval` seconds (Centreon's freshness checking needs a fresh result even when
nothing changed). The decision, the new state and the append to every forwarder's outbox
are one Lua script: a consumer killed between two steps cannot lose a state change or
forward one twice, and two consumers cannot both forward the same result. A result
delivered again (a redelivered batch, a check run twice) is recognised by the run id kept
with the state: no per-run keys pile up in Redis.

Real and synthetic states are told apart. A *real* result is a measurement; a *synthetic*
one says that measurements are missing: an orphan (a run that produced nothing) or a
starvation UNKNOWN (no result at all for a while, shared/ledger.py and the processor). The
state keeps the time and the run of its last real measurement, so that:

- a real result is old only against a newer real measurement, never against a synthetic
  state stamped later (the orphan of a later run still wins over the result of an earlier
  run: it is the newer news);
- an orphan is old when a real result of that run, or of a later one, is already in;
- a starvation UNKNOWN is old when a real result came in the meantime;
- the check time forwarded never goes back (Centreon takes `last_check` as it comes): a
  real result that ended before the last time forwarded goes with that time instead.

Each real result also sets when its service will count as starved (`states:starving`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import redis

from smtp_checks.consumer.forwarders.base import PassiveResult
from smtp_checks.shared.keys import KEYS, Keys

Synthetic = Literal["orphan", "starved"]

# The passive result of a state, for the outboxes: the fields PassiveResult has, no more.
_PASSIVE = """
local function passive(state, kind, check_time)
  return cjson.encode({identity = state.identity, status = state.status, output = state.output,
    perfdata = state.perfdata, check_time = check_time, kind = kind})
end
"""

# KEYS: states hash, resend zset, starving zset, outbox lists...
# ARGV: service field, passive result JSON (with its run id and, for a synthetic result, what
# it is), now, resend interval, seconds without a real result before the service is starved.
# Returns 'change', 'refresh', 'same' (kept, not forwarded), 'old' or 'duplicate'.
_RECORD = (
    _PASSIVE
    + """
local result = cjson.decode(ARGV[2])
local now, resend, starve = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local synthetic = result.synthetic
-- Times kept in a state went through cjson, which keeps 14 significant digits (an epoch to
-- 1/10,000 s): two times of one run may differ by that much.
local EPS = 0.001
-- The last real measurement: its end and its run's slot (0 while there is none).
local measured_at, measured_for = result.check_time, result.identity.scheduled_for
if synthetic then measured_at, measured_for = 0, 0 end
local previous = redis.call('HGET', KEYS[1], ARGV[1])
local kind, forwarded_at = 'change', now
if previous then
  previous = cjson.decode(previous)
  if result.run_id == previous.run_id then return 'duplicate' end
  local last_real = previous.measured_at or previous.check_time  -- states of an older release
  local last_for = previous.measured_for or previous.identity.scheduled_for
  if synthetic == nil then
    if result.check_time < last_real - EPS then return 'old' end
    if previous.synthetic == 'orphan'
        and result.identity.scheduled_for < previous.identity.scheduled_for - EPS then
      return 'old'
    end
  elseif synthetic == 'orphan' then
    if result.identity.scheduled_for <= last_for + EPS then return 'old' end
  elseif last_real + starve > now then
    return 'old'  -- starved, yet a real result came in the meantime
  end
  if synthetic then measured_at, measured_for = last_real, last_for end
  local sent = previous.sent_check_time or previous.check_time
  if result.check_time < sent then result.check_time = sent end
  -- The same status is news when what it stands for changes (a real UNKNOWN, a starved
  -- service, an orphan of a dead site): each says something else to an operator.
  if result.status == previous.status and synthetic == previous.synthetic then
    if now >= previous.forwarded_at + resend then kind = 'refresh'
    else kind, forwarded_at = 'same', previous.forwarded_at end
  end
end
result.kind = kind
result.forwarded_at = forwarded_at
result.measured_at, result.measured_for = measured_at, measured_for
result.sent_check_time = result.check_time
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(result))
redis.call('ZADD', KEYS[2], forwarded_at + resend, ARGV[1])
if synthetic == nil then
  -- GT: a result of before a long stop does not pull back the clock its start pushed on.
  redis.call('ZADD', KEYS[3], 'GT', measured_at + starve, ARGV[1])
elseif synthetic == 'starved' then
  redis.call('ZREM', KEYS[3], ARGV[1])  -- one UNKNOWN; the next real result starts it again
end
if kind ~= 'same' then
  local item = passive(result, kind, result.check_time)
  for i = 4, #KEYS do redis.call('RPUSH', KEYS[i], item) end
end
return kind
"""
)

# KEYS: states hash, resend zset, outbox lists... ARGV: now, resend interval, limit.
# Re-send the current state of services not forwarded for `resend` seconds, stamped now.
_REFRESH = (
    _PASSIVE
    + """
local now, resend = tonumber(ARGV[1]), tonumber(ARGV[2])
local fields = redis.call('ZRANGE', KEYS[2], '-inf', now, 'BYSCORE', 'LIMIT', 0, ARGV[3])
for _, field in ipairs(fields) do
  local raw = redis.call('HGET', KEYS[1], field)
  if raw then
    local state = cjson.decode(raw)
    state.forwarded_at = now
    state.sent_check_time = math.max(now, state.sent_check_time or state.check_time)
    redis.call('HSET', KEYS[1], field, cjson.encode(state))
    redis.call('ZADD', KEYS[2], now + resend, field)
    local item = passive(state, 'refresh', state.sent_check_time)
    for i = 3, #KEYS do redis.call('RPUSH', KEYS[i], item) end
  else
    redis.call('ZREM', KEYS[2], field)
  end
end
return #fields
"""
)


def service_field(host: str, service: str) -> str:
    return json.dumps([host, service])


@dataclass(frozen=True)
class Observation:
    """A result to record: real, or synthetic (what it stands for), under a key unique to
    it (the run id; `orphan:<run>` for the orphan of a run)."""

    key: str
    result: PassiveResult
    synthetic: Synthetic | None = None


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
        starve_after: Mapping[tuple[str, str], float] | None = None,
        keys: Keys = KEYS,
    ) -> None:
        """`starve_after`: for each service, the seconds without a real result after which
        it is starved (default: three resend intervals)."""
        self._client = client
        self._states = keys.states
        self._resend = keys.states_resend
        self._starving = keys.states_starving
        self._outboxes = outbox_keys
        self.resend_interval = resend_interval
        self._starve_after = dict(starve_after or {})
        self._record = client.register_script(_RECORD)
        self._refresh = client.register_script(_REFRESH)

    def starve_after(self, host: str, service: str) -> float:
        return self._starve_after.get((host, service), 3 * self.resend_interval)

    def record(self, observations: list[Observation], now: float) -> list[Decision]:
        """Record results in one round trip; say what each became."""
        pipe = self._client.pipeline(transaction=False)
        for observation in observations:
            result = observation.result
            payload = {**result.as_json(), "run_id": observation.key}
            payload.pop("kind")
            if observation.synthetic is not None:
                payload["synthetic"] = observation.synthetic
            self._record(
                keys=[self._states, self._resend, self._starving, *self._outboxes],
                args=[
                    service_field(result.host, result.service),
                    json.dumps(payload),
                    now,
                    self.resend_interval,
                    self.starve_after(result.host, result.service),
                ],
                client=pipe,
            )
        kinds = pipe.execute()
        return [
            Decision(observation.result, kind.decode() if isinstance(kind, bytes) else str(kind))
            for observation, kind in zip(observations, kinds, strict=True)
        ]

    def watch_starvation(self, services: list[tuple[str, str]], now: float) -> None:
        """Start the starvation clock of these services at `now`, unless it would ring later
        already (GT): silence is measured while a consumer watches, so a pipeline started
        again after hours down gives its workers time for a first result."""
        if services:
            self._client.zadd(
                self._starving,
                {service_field(h, s): now + self.starve_after(h, s) for h, s in services},
                gt=True,
            )

    def starving(self, now: float, limit: int = 1000) -> list[tuple[str, str, float]]:
        """(host, service, since when silent) of the services starved at `now`: no real
        result since longer than their starvation time."""
        due: list[tuple[bytes, float]] = self._client.zrange(
            self._starving, "-inf", now, byscore=True, offset=0, num=limit, withscores=True
        )  # type: ignore[assignment]
        starved = []
        for field, score in due:
            host, service = json.loads(field)
            starved.append((host, service, score - self.starve_after(host, service)))
        return starved

    def postpone_starvation(self, services: list[tuple[str, str]], now: float) -> None:
        """Start these starving services' clocks again at `now`: their site has no live
        worker (its orphans say so), and silence counts only while it has."""
        if services:
            self._client.zadd(
                self._starving,
                {service_field(h, s): now + self.starve_after(h, s) for h, s in services},
                xx=True,
            )

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
        members: list[bytes] = self._client.zrange(self._starving, 0, -1)  # type: ignore[assignment]
        watched = [field for field in members if tuple(json.loads(field)) not in known]
        if watched:
            self._client.zrem(self._starving, *watched)
        return len(stale)

    def current(self, host: str, service: str) -> dict[str, object] | None:
        raw = self._client.hget(self._states, service_field(host, service))
        return None if raw is None else dict(json.loads(raw))
