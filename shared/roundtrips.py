"""Round trips in progress, in Redis: between the send step's result and the verdict on
delivery, what the consumer and the beat share.

The consumer begins a round trip when its send step succeeds and asks for a look into the
mailbox at once; after each look that found nothing it asks for the next one, a little
later each time (`next_look_delay`), until the receive timeout. The beat's leader enqueues
each look when it falls due, as a run of its own on the receiving site's queue (through the
ledger: stale and orphan rules apply). So no task sleeps through the delivery wait and no
message waits in a queue for its time: a look is published when due, never with a delay
(a Redis-broker message held past its visibility timeout is delivered twice: Celery issue
2599).

A check has one round trip at a time: the beat skips a slot of a check whose round trip is
still in progress (counted as a skipped slot), and a look of an earlier round trip is
recognised by its token (the send run's id) and ignored. A round trip that outlives its
last possible look (`over_by`: the beat was down, say) is ended by the consumer, UNKNOWN.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

import redis

from smtp_checks.shared.config import ScheduledCheck
from smtp_checks.shared.keys import KEYS, Keys
from smtp_checks.shared.mailbox.delivery import FIRST_LOOK_DELAY, next_look_at
from smtp_checks.shared.messages import CheckResult

# KEYS: looks, trips. ARGV: now, limit. Take the looks due by `now`; returns check id,
# token pairs (a look of a round trip no longer there is dropped).
_TAKE_DUE = """
local due = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, ARGV[2])
local taken = {}
for _, check in ipairs(due) do
  redis.call('ZREM', KEYS[1], check)
  local trip = redis.call('HGET', KEYS[2], check)
  if trip then
    taken[#taken + 1] = check
    taken[#taken + 1] = cjson.decode(trip).token
  end
end
return taken
"""


@dataclass(frozen=True)
class RoundTrip:
    """A round trip in progress: its check, its token (the send run's id), when its message
    was accepted, the looks made so far, and its send step's result as JSON (parsed only by
    the consumer: the beat reads the plain fields, whatever a newer result holds)."""

    check_id: str
    token: str
    sent_at: float  # epoch seconds: the end of DATA, where the delivery time starts
    send_json: str
    looks: int = 0
    last_look_at: float | None = None  # when the last look that found nothing was made

    @classmethod
    def of(cls, send: CheckResult) -> RoundTrip:
        sent_at = send.sent_at or send.ended_at
        return cls(send.check_id, send.run_id, sent_at, send.model_dump_json())

    @property
    def send(self) -> CheckResult:
        return CheckResult.model_validate_json(self.send_json)

    def over_by(self, check: ScheduledCheck, grace: float) -> float:
        """When this round trip must have its verdict: the last look starts at the end of
        the receive timeout, takes at most the check's timeout, and is reported as an
        orphan `grace` after that if it never comes back; another grace for the rest."""
        receive_timeout = check.receive.timeout if check.receive else 0.0
        return self.sent_at + receive_timeout + check.timeout + 2 * grace

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> RoundTrip:
        fields = json.loads(text)
        return cls(
            str(fields["check_id"]),
            str(fields["token"]),
            float(fields["sent_at"]),
            str(fields["send_json"]),
            int(fields["looks"]),
            None if fields["last_look_at"] is None else float(fields["last_look_at"]),
        )


class RoundTrips:
    """The round trips in progress (blocking client: the consumer and the beat)."""

    def __init__(self, client: redis.Redis, *, keys: Keys = KEYS) -> None:
        self._client = client
        self._keys = keys
        self._take_due = client.register_script(_TAKE_DUE)

    def begin(self, send: CheckResult, now: float) -> RoundTrip | None:
        """The send step of `send.check_id` succeeded: look for its message soon. The round
        trip it replaces, if one was still in progress (an ad hoc run beside a scheduled
        one): that one ends without a verdict."""
        replaced = self.get(send.check_id)
        self._save(RoundTrip.of(send), now + FIRST_LOOK_DELAY)
        return replaced if replaced is not None and replaced.token != send.run_id else None

    def look_again(
        self, trip: RoundTrip, at: float, *, looked_at: float | None, not_after: float
    ) -> None:
        """A look at `looked_at` found nothing (None: it could not be made, `at`): the next
        one, a little later (never past `not_after`, the end of the receive timeout)."""
        looks = trip.looks + 1
        last = trip.last_look_at if looked_at is None else looked_at
        later = replace(trip, looks=looks, last_look_at=last)
        self._save(later, next_look_at(at, looks, not_after))

    def get(self, check_id: str) -> RoundTrip | None:
        raw = self._client.hget(self._keys.roundtrips, check_id)
        return None if raw is None else RoundTrip.from_json(raw)

    def in_progress(self, checks: list[ScheduledCheck], now: float, grace: float) -> set[str]:
        """The ids of `checks` whose round trip has no verdict yet and is not over due."""
        if not checks:
            return set()
        raws = self._client.hmget(self._keys.roundtrips, [check.check_id for check in checks])
        busy = set()
        for check, raw in zip(checks, raws, strict=True):
            try:
                if raw is not None and now < RoundTrip.from_json(raw).over_by(check, grace):
                    busy.add(check.check_id)
            except (ValueError, KeyError, TypeError):  # unreadable: not in the way
                continue
        return busy

    def all(self) -> dict[str, RoundTrip]:
        """Every round trip in progress, by check id."""
        return {
            _text(check): RoundTrip.from_json(raw)
            for check, raw in self._client.hgetall(self._keys.roundtrips).items()
        }

    def end(self, check_id: str, token: str) -> None:
        """The round trip of `token` has its verdict (a newer one of the check stays)."""
        trip = self.get(check_id)
        if trip is not None and trip.token == token:
            pipe = self._client.pipeline(transaction=True)
            pipe.hdel(self._keys.roundtrips, check_id)
            pipe.zrem(self._keys.roundtrip_looks, check_id)
            pipe.execute()

    def take_due(self, now: float, limit: int = 500) -> list[tuple[str, str]]:
        """The (check id, token) of every look due by `now`, no longer due once taken."""
        keys = [self._keys.roundtrip_looks, self._keys.roundtrips]
        raw = self._take_due(keys=keys, args=[now, limit])
        return [
            (_text(check), _text(token)) for check, token in zip(raw[::2], raw[1::2], strict=True)
        ]

    def retry(self, check_id: str, at: float) -> None:
        """A look taken but not enqueued (Redis or the broker refused): due again at `at`."""
        self._client.zadd(self._keys.roundtrip_looks, {check_id: at})

    def forget_checks_except(self, check_ids: set[str]) -> None:
        """Drop the round trips of checks no longer configured."""
        gone = [c for c in self._client.hkeys(self._keys.roundtrips) if _text(c) not in check_ids]
        if gone:
            self._client.hdel(self._keys.roundtrips, *gone)
            self._client.zrem(self._keys.roundtrip_looks, *gone)

    def _save(self, trip: RoundTrip, look_at: float) -> None:
        pipe = self._client.pipeline(transaction=True)
        check_id = trip.check_id
        pipe.hset(self._keys.roundtrips, check_id, trip.to_json())
        pipe.zadd(self._keys.roundtrip_looks, {check_id: look_at})
        pipe.execute()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
