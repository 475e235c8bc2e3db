"""The ledger of runs that were enqueued and have no result yet, in Redis.

Whoever enqueues a run (the beat, `smtp-checks enqueue`) records it here with the time by
which its result must have come (its stale time plus a grace). The consumer settles a run
when its result arrives, and reports the runs still here after their time as orphaned:
nothing scheduled is ever silently lost.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import redis

from smtp_checks.shared.identity import CheckIdentity, Identified
from smtp_checks.shared.keys import KEYS, Keys
from smtp_checks.shared.messages import CheckRequest
from smtp_checks.shared.probe.spec import Mode

DEFAULT_GRACE = 30.0  # seconds after the stale time before a missing result is an orphan

# Take up to ARGV[2] runs due by ARGV[1] and remove them, in one step: two consumers
# sweeping at once must not both report the same orphan.
_TAKE_DUE = """
local ids = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, ARGV[2])
if #ids == 0 then return {} end
local runs = redis.call('HMGET', KEYS[2], unpack(ids))
redis.call('ZREM', KEYS[1], unpack(ids))
redis.call('HDEL', KEYS[2], unpack(ids))
return runs
"""


@dataclass(frozen=True)
class OutstandingRun(Identified):
    """A run the ledger awaits a result for."""

    identity: CheckIdentity

    def to_json(self) -> str:
        return json.dumps(asdict(self.identity))

    @classmethod
    def from_json(cls, text: str | bytes) -> OutstandingRun:
        fields = json.loads(text)
        if "identity" not in fields:  # version 1: an older beat's entry
            fields = {**fields, "mode": fields["check_id"].rpartition("/")[2]}
        else:
            fields = fields["identity"]
        return cls(CheckIdentity(**{**fields, "mode": Mode(fields["mode"])}))


class Ledger:
    def __init__(
        self, client: redis.Redis, *, keys: Keys = KEYS, grace: float = DEFAULT_GRACE
    ) -> None:
        self._client = client
        self._due_key = keys.outstanding
        self._runs_key = keys.outstanding_runs
        self.grace = grace
        self._take_due = client.register_script(_TAKE_DUE)

    def expect(self, *requests: CheckRequest) -> None:
        """Record runs about to be published, in one round trip however many."""
        if not requests:
            return
        runs = [OutstandingRun(request.identity) for request in requests]
        pipe = self._client.pipeline()
        pipe.hset(self._runs_key, mapping={run.run_id: run.to_json() for run in runs})
        pipe.zadd(self._due_key, {run.run_id: run.stale_at + self.grace for run in runs})
        pipe.execute()

    def settle(self, run_id: str) -> bool:
        """The run's result arrived; False if it was not outstanding (already settled or
        reported as an orphan)."""
        pipe = self._client.pipeline()
        pipe.zrem(self._due_key, run_id)
        pipe.hdel(self._runs_key, run_id)
        removed, _ = pipe.execute()
        return bool(removed)

    def take_orphans(self, now: float, limit: int = 1000) -> list[OutstandingRun]:
        """Remove and return the runs whose result is overdue at `now`."""
        raw = self._take_due(keys=[self._due_key, self._runs_key], args=[now, limit])
        return [OutstandingRun.from_json(item) for item in raw if item is not None]

    def count(self) -> int:
        return int(self._client.zcard(self._due_key))
