"""The ledger of runs: every run enqueued and not yet answered, and the one pending run of
each check, in Redis.

A run's life, each step one atomic script or transaction, so no step can be seen half done:

1. **Enqueued** (the beat, `smtp-checks enqueue`): recorded with the time by which its
   result is due, as the *pending* run of its check (queued, not yet taken) and as its
   *latest* run. A check has at most one pending run: the beat does not enqueue a check
   whose previous run is still queued, and counts the skipped slot instead. An overloaded
   site then checks each service less often, with real results, instead of filling its
   queue with runs that would only be thrown away. An ad hoc run is always enqueued.
2. **Taken** (a worker, before running it): no longer pending. A run that is no longer the
   latest of its check, because a newer one was enqueued after it (an ad hoc run, a new
   run after this one was found lost, or the next slot after a worker died holding it), is
   *superseded*: dropped unrun and counted. Any other run is run, however late: its result
   is the newest measurement anyone asked for. A taken run is due back within its check's
   timeout and a grace; one taken by a worker that died stays due, superseded or not, so
   that the sweep reports the dead worker.
3. **Answered** (the worker, in the transaction that publishes its result): settled. A run
   whose result is published is never reported as an orphan, however far behind the
   consumer is.
4. **Orphaned** (the consumer's sweep): a run past its due time that a worker took and never
   answered (the worker died), or that is still queued on a site with no live worker. A
   run still queued on a site whose workers are alive is late, not lost: it waits; so is a
   run held by a worker still alive, for `HELD_AT_MOST` (Redis out of its reach). A worker
   that gives a run back unrun (stopping, or a check that failed) *untakes* it first.

A pending run is *lost* when its site's queue was seen empty more than `LOST_AFTER` after it
was enqueued (every message published before that moment was taken, or is gone: a broker
restarted without its data). The next slot of its check is then enqueued anyway, and
supersedes it. The moment a queue was last seen empty comes from the workers' heartbeats
(`shared/heartbeats.py`); clocks are assumed in step (NTP) within `LOST_AFTER`, as Centreon's
check times already require. A run is also lost when the beat could not publish it, and when
it has been pending for `PENDING_INTERVALS` intervals (where emptiness cannot be seen).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import Enum

import redis
import redis.asyncio

from smtp_checks.shared.heartbeats import HEARTBEAT_EVERY
from smtp_checks.shared.identity import CheckIdentity, Identified
from smtp_checks.shared.keys import KEYS, Keys
from smtp_checks.shared.messages import CheckRequest
from smtp_checks.shared.probe.spec import Mode

DEFAULT_GRACE = 30.0  # seconds after the stale time before a missing result is an orphan
# A pending run is lost when its queue was seen empty this long after the run was recorded:
# the beat records a run before it publishes it (a worker may find the queue empty in
# between), and the worker's clock may be a little off the beat's.
LOST_AFTER = 5.0
# Nor is a run pending for ever: past this many intervals it is presumed lost. Its check
# then has two runs queued, the older superseded when taken: one measurement the less, never
# an UNKNOWN. Where the queue's emptiness can be seen (Redis), only a site so far behind that
# its queue never empties needs it; where it cannot (RabbitMQ: workers read a prefetch
# buffer), it is the only way to find a lost run, and comes before a service counts as
# starved (3 intervals), at the cost of two runs queued per check on a site past capacity.
PENDING_INTERVALS = 10
UNSEEN_PENDING_INTERVALS = 2
MIN_PENDING = 10.0
# A run taken by a worker that is still alive is awaited this long (seconds since it was
# taken) before it is reported: the worker may be unable to publish (Redis out of reach).
HELD_AT_MOST = 300.0
# A worker that took a run counts as alive while its heartbeat is this young: two missed
# beats and a half, so that a killed worker's runs are reported within seconds (ALIVE_FOR,
# which tells a live site, allows more).
TAKER_ALIVE_FOR = 2.5 * HEARTBEAT_EVERY

# KEYS: due, runs, pending, latest, counters. ARGV: now, LOST_AFTER, then 9 per run: check id,
# run id, entry, due time, slot key ('' for none), slot TTL, when the site's queue was last
# seen empty ('' if unknown), forced ('1' for an ad hoc run), how long a run may stay pending.
# Returns a verdict per run. A pending run whose "since" is 0 was never published.
_ENQUEUE = """
local now = ARGV[1]
local verdicts = {}
for i = 3, #ARGV, 9 do
  local check, run, entry, due = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local slot, ttl, empty_at, forced = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
  local max_pending = tonumber(ARGV[i + 8])
  local verdict = nil
  local previous = nil
  local pending = redis.call('HGET', KEYS[3], check)
  if pending then
    local space = string.find(pending, ' ', 1, true)
    previous = string.sub(pending, 1, space - 1)
    local queued_since = tonumber(string.sub(pending, space + 1))
    local queued = redis.call('HEXISTS', KEYS[2], previous) == 1
      and queued_since > 0 and tonumber(now) - queued_since < max_pending
      and (empty_at == '' or queued_since + tonumber(ARGV[2]) >= tonumber(empty_at))
    if queued and forced == '0' then verdict = 'pending' end
  end
  if not verdict and slot ~= '' and not redis.call('SET', slot, 1, 'NX', 'EX', ttl) then
    verdict = 'claimed'
  end
  if not verdict then
    if previous then
      redis.call('ZREM', KEYS[1], previous)
      redis.call('HDEL', KEYS[2], previous)
    end
    redis.call('HSET', KEYS[2], run, entry)
    redis.call('ZADD', KEYS[1], due, run)
    redis.call('HSET', KEYS[3], check, run .. ' ' .. now)
    redis.call('HSET', KEYS[4], check, run)
    verdict = 'enqueued'
  end
  verdicts[#verdicts + 1] = verdict
  if verdict == 'pending' then redis.call('HINCRBY', KEYS[5], 'skipped_slots', 1) end
end
return verdicts
"""

# Whether the worker that took a run (`taken`: its JSON) is alive, in the same life: its
# heartbeat (in the hash `heartbeats`) is younger than `alive_for` and its process started
# before it took the run.
_TAKER_ALIVE = """
local function taker_alive(heartbeats, taken, now, alive_for)
  local by = cjson.decode(taken)
  local raw = redis.call('HGET', heartbeats, 'worker:' .. by.worker)
  if not raw then return false end
  local beat = cjson.decode(raw)
  return tonumber(now) - beat.at < alive_for and beat.started_at <= by.at
end
"""

# KEYS: pending. ARGV: check id, run id, per run. A run that could not be published is no
# longer pending: the next slot of its check goes out, and supersedes it.
_UNPUBLISHED = """
for i = 1, #ARGV, 2 do
  local pending = redis.call('HGET', KEYS[1], ARGV[i])
  if pending and string.sub(pending, 1, #ARGV[i + 1] + 1) == ARGV[i + 1] .. ' ' then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1] .. ' 0')
  end
end
"""

# KEYS: taken. ARGV: worker, then run ids. Forget the holds of `worker` on these runs.
_UNTAKE = """
for i = 2, #ARGV do
  local taken = redis.call('HGET', KEYS[1], ARGV[i])
  if taken and cjson.decode(taken).worker == ARGV[1] then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
"""

# KEYS: due, runs, pending, latest, taken. ARGV: now, worker, then 4 per run: check id,
# run id, ad hoc ('1' or '0'), due time once taken. Returns 1 (run it) or 0 (superseded).
_TAKE = """
local now, worker = ARGV[1], ARGV[2]
local verdicts = {}
for i = 3, #ARGV, 4 do
  local check, run, adhoc, due = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local pending = redis.call('HGET', KEYS[3], check)
  if pending and string.sub(pending, 1, #run + 1) == run .. ' ' then
    redis.call('HDEL', KEYS[3], check)
  end
  local latest = redis.call('HGET', KEYS[4], check)
  if adhoc == '0' and latest and latest ~= run then
    -- Superseded. Taken before by a worker that died (redelivered), it stays awaited, and
    -- the sweep reports that worker; never taken (or given back), it is settled here.
    if redis.call('HEXISTS', KEYS[5], run) == 0 then
      redis.call('ZREM', KEYS[1], run)
      redis.call('HDEL', KEYS[2], run)
    end
    verdicts[#verdicts + 1] = 0
  else
    if redis.call('HEXISTS', KEYS[2], run) == 1 then
      redis.call('ZADD', KEYS[1], due, run)
      redis.call('HSET', KEYS[5], run, cjson.encode({worker = worker, at = tonumber(now)}))
    end
    verdicts[#verdicts + 1] = 1
  end
end
return verdicts
"""

# KEYS: due, runs, pending, taken, recent orphans, heartbeats. ARGV: now, limit, the due time
# of a deferred queued run, that of a deferred held run, TAKER_ALIVE_FOR, HELD_AT_MOST, then
# the sites with live workers. Takes the orphans due by `now` (noted among the last hour's);
# returns entry, taken pairs ('' when never taken). Deferred, not orphaned: a run still
# queued on a live site, and a run held by a live worker for less than HELD_AT_MOST (a Redis
# outage kept it from publishing).
_SWEEP = (
    _TAKER_ALIVE
    + """
local now, limit, later, held_later = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local alive_for, held_at_most = tonumber(ARGV[5]), tonumber(ARGV[6])
local live = {}
for i = 7, #ARGV do live[ARGV[i]] = true end
local orphans = {}
local ids = redis.call('ZRANGE', KEYS[1], '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
for _, run in ipairs(ids) do
  local entry = redis.call('HGET', KEYS[2], run)
  local taken = redis.call('HGET', KEYS[4], run)
  if not entry then
    redis.call('ZREM', KEYS[1], run)
    redis.call('HDEL', KEYS[4], run)
  else
    local identity = cjson.decode(entry)
    local defer, again = live[identity.site], later
    if taken then
      defer = tonumber(now) - cjson.decode(taken).at < held_at_most
        and taker_alive(KEYS[6], taken, now, alive_for)
      again = held_later
    end
    if defer then
      redis.call('ZADD', KEYS[1], again, run)
    else
      redis.call('ZREM', KEYS[1], run)
      redis.call('HDEL', KEYS[2], run)
      redis.call('HDEL', KEYS[4], run)
      local pending = redis.call('HGET', KEYS[3], identity.check_id)
      if pending and string.sub(pending, 1, #run + 1) == run .. ' ' then
        redis.call('HDEL', KEYS[3], identity.check_id)
      end
      orphans[#orphans + 1] = entry
      orphans[#orphans + 1] = taken or ''
      redis.call('ZADD', KEYS[5], now, run)
    end
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', tonumber(now) - 3600)
return orphans
"""
)


class Verdict(Enum):
    """What `Ledger.enqueue` did with a run."""

    ENQUEUED = "enqueued"  # recorded: publish it
    CLAIMED = "claimed"  # its slot was enqueued already, by another beat or an earlier leader
    PENDING = "pending"  # the check's previous run is still queued: this slot is skipped


@dataclass(frozen=True)
class NewRun:
    """A run about to be enqueued, and the slot key that makes it unique (scheduled runs)."""

    request: CheckRequest
    slot_key: str | None = None
    slot_ttl: int = 0


@dataclass(frozen=True)
class OutstandingRun(Identified):
    """A run the ledger awaits a result for."""

    identity: CheckIdentity

    def to_json(self) -> str:
        return json.dumps(asdict(self.identity))

    @classmethod
    def from_json(cls, text: str | bytes) -> OutstandingRun:
        fields = json.loads(text)
        if "identity" not in fields and "mode" not in fields:  # an entry of a version-1 beat
            fields = {**fields, "mode": fields["check_id"].rpartition("/")[2]}
        else:
            fields = fields.get("identity", fields)
        return cls(CheckIdentity(**{**fields, "mode": Mode(fields["mode"])}))


@dataclass(frozen=True)
class Orphan:
    """A run the sweep gave up on: `taken_by` the worker that took it and never answered,
    None when no worker took it."""

    run: OutstandingRun
    taken_by: str | None = None
    taken_at: float | None = None


class _LedgerKeys:
    def __init__(self, keys: Keys) -> None:
        self.due = keys.outstanding
        self.runs = keys.outstanding_runs
        self.pending = keys.outstanding_pending
        self.latest = keys.outstanding_latest
        self.taken = keys.outstanding_taken
        self.orphans_recent = keys.orphans_recent
        self.heartbeats = keys.heartbeats
        self.counters = keys.counters


class Ledger:
    """The ledger as the beat, the enqueuer and the consumer use it (blocking client)."""

    def __init__(
        self, client: redis.Redis, *, keys: Keys = KEYS, grace: float = DEFAULT_GRACE
    ) -> None:
        self._client = client
        self._keys = _LedgerKeys(keys)
        self.grace = grace
        self._enqueue = client.register_script(_ENQUEUE)
        self._unpublished = client.register_script(_UNPUBLISHED)
        self._sweep = client.register_script(_SWEEP)

    def enqueue(
        self, runs: Sequence[NewRun], *, queue_empty_at: Mapping[str, float] | None = None
    ) -> list[Verdict]:
        """Record runs about to be published, in one round trip however many; say which to
        publish. `queue_empty_at`: when each site's queue was last seen empty (heartbeats)."""
        if not runs:
            return []
        empty = queue_empty_at or {}
        args: list[str | float] = [time.time(), LOST_AFTER]
        for new in runs:
            request = new.request
            args += [
                request.check_id,
                request.run_id,
                OutstandingRun(request.identity).to_json(),
                request.stale_at + self.grace,
                new.slot_key or "",
                new.slot_ttl,
                empty.get(request.site, ""),
                "1" if request.adhoc else "0",
                max(MIN_PENDING, _pending_intervals(request.site in empty) * _interval(request)),
            ]
        k = self._keys
        replies = self._enqueue(keys=[k.due, k.runs, k.pending, k.latest, k.counters], args=args)
        return [Verdict(_text(reply)) for reply in replies]

    def unpublished(self, requests: Sequence[CheckRequest]) -> None:
        """These runs were recorded but could not be published (the broker refused): not
        pending, so that the next slot of each check goes out."""
        if requests:
            args = [value for request in requests for value in (request.check_id, request.run_id)]
            self._unpublished(keys=[self._keys.pending], args=args)

    def settle(self, run_ids: Sequence[str]) -> None:
        """Results arrived for these runs (the consumer's side, for workers of version 1,
        which do not settle what they publish)."""
        if run_ids:
            pipe = self._client.pipeline(transaction=True)
            _add_settle(pipe, self._keys, run_ids)
            pipe.execute()

    def sweep(self, now: float, live_sites: set[str], limit: int = 1000) -> list[Orphan]:
        """Remove and return the runs orphaned at `now`; defer those still queued on a site
        with live workers."""
        k = self._keys
        raw = self._sweep(
            keys=[k.due, k.runs, k.pending, k.taken, k.orphans_recent, k.heartbeats],
            args=[
                now,
                limit,
                now + self.grace,
                now + HEARTBEAT_EVERY,
                TAKER_ALIVE_FOR,
                HELD_AT_MOST,
                *sorted(live_sites),
            ],
        )
        orphans = []
        for entry, taken in zip(raw[::2], raw[1::2], strict=True):
            by = json.loads(taken) if taken else {}
            orphans.append(Orphan(OutstandingRun.from_json(entry), by.get("worker"), by.get("at")))
        return orphans

    def forget_checks_except(self, check_ids: set[str]) -> int:
        """Drop what the ledger keeps of checks no longer configured: their pending and latest
        runs, and runs of theirs still awaited (never to be reported: their services are
        gone from Centreon's config too). How many runs it dropped."""
        k = self._keys
        for key in (k.pending, k.latest):
            gone = [c for c in self._client.hkeys(key) if _text(c) not in check_ids]
            if gone:
                self._client.hdel(key, *gone)
        runs = [
            run_id
            for run_id, entry in self._client.hscan_iter(k.runs)
            if (check := _check_id(entry)) is not None and check not in check_ids
        ]
        if runs:
            pipe = self._client.pipeline(transaction=True)
            _add_settle(pipe, k, [_text(run_id) for run_id in runs])
            pipe.execute()
        return len(runs)

    def count(self) -> int:
        """Runs awaited."""
        return int(self._client.zcard(self._keys.due))

    def pending_count(self) -> int:
        """Checks with a run queued and not yet taken."""
        return int(self._client.hlen(self._keys.pending))

    def outstanding(self) -> list[OutstandingRun]:
        return [OutstandingRun.from_json(raw) for raw in self._client.hvals(self._keys.runs)]


class WorkerLedger:
    """The ledger as a worker uses it, from its event loop: take runs, settle answers."""

    def __init__(
        self, client: redis.asyncio.Redis, *, keys: Keys = KEYS, grace: float = DEFAULT_GRACE
    ) -> None:
        """`grace`: the config's `orphan_grace`, as the consumer's sweep applies it."""
        self._keys = _LedgerKeys(keys)
        self._client = client
        self._grace = grace
        self._take = client.register_script(_TAKE)
        self._untake = client.register_script(_UNTAKE)

    async def take(self, requests: Sequence[CheckRequest], *, worker: str) -> list[bool]:
        """Mark runs as taken by `worker`, in one round trip; False for each superseded run
        (a newer run of its check was enqueued after it): drop it unrun."""
        if not requests:
            return []
        now = time.time()
        args: list[str | float] = [now, worker]
        for request in requests:
            due = now + request.target.timeout + self._grace
            args += [request.check_id, request.run_id, "1" if request.adhoc else "0", due]
        k = self._keys
        replies = await self._take(keys=[k.due, k.runs, k.pending, k.latest, k.taken], args=args)
        return [bool(int(reply)) for reply in replies]

    async def untake(self, run_ids: Sequence[str], *, worker: str) -> None:
        """These runs go back to the queue unrun (a worker stopping, or a check that
        failed): queued again, no longer held by `worker` (nor by another that has taken
        one since: its hold stays)."""
        if run_ids:
            await self._untake(keys=[self._keys.taken], args=[worker, *run_ids])

    def settle_in(self, pipe: redis.asyncio.client.Pipeline, run_ids: Sequence[str]) -> None:
        """Add the settling of `run_ids` to `pipe`, the transaction that publishes them."""
        _add_settle(pipe, self._keys, run_ids)


def _add_settle(
    pipe: redis.client.Pipeline | redis.asyncio.client.Pipeline,
    keys: _LedgerKeys,
    run_ids: Sequence[str],
) -> None:
    if run_ids:
        pipe.zrem(keys.due, *run_ids)
        pipe.hdel(keys.runs, *run_ids)
        pipe.hdel(keys.taken, *run_ids)


def _check_id(entry: bytes | str) -> str | None:
    """The check of a ledger entry; None for one this release cannot read (kept)."""
    try:
        return OutstandingRun.from_json(entry).check_id
    except (ValueError, KeyError, TypeError):
        return None


def _pending_intervals(queue_seen_empty: bool) -> int:
    return PENDING_INTERVALS if queue_seen_empty else UNSEEN_PENDING_INTERVALS


def _interval(request: CheckRequest) -> float:
    """A run's window: from its slot to its stale time (the check's interval)."""
    return request.stale_at - request.scheduled_for


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
