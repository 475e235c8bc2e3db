"""Per-target-SMTP-server limits shared by every worker of every site, kept in Redis.

A target (``"192.0.2.10:25"``) gets at most ``max_concurrent`` sessions at once and at most
``max_per_minute`` new sessions in any sliding 60-second window. Each operation is one Lua
script, so taking a permit is atomic across workers, and the scripts read Redis's own clock
(``TIME``), so workers with skewed clocks agree. A permit is a lease: if its holder dies, it
expires by itself.

Two sorted sets per target (shared/keys.py names them):

- ``smtp-checks:target:<target>:sessions``: one member per live permit, scored by its lease
  expiry (ms);
- ``smtp-checks:target:<target>:starts``: one member per session started, scored by its start
  time (ms).

Both keys carry a TTL (the longest lease left, and the window), so an idle target leaves no
keys behind. They have no hash tag: the limiter targets a standalone Redis (or a primary with
replicas), like the Celery broker, not Redis Cluster.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final, Generic, Literal, TypeVar

import redis.asyncio

from smtp_checks.shared.backoff import Backoff
from smtp_checks.shared.errors import LimiterError
from smtp_checks.shared.keys import KEYS, Keys
from smtp_checks.shared.redis_client import REDIS_DOWN

__all__ = [
    "LimiterUnavailable",
    "PermitTimeout",
    "TargetLimiter",
    "TargetLimits",
]

log = logging.getLogger(__name__)

WINDOW_SECONDS: Final = 60

# Polling while a target is full: short and jittered, so contenders in many processes neither
# synchronise nor hammer Redis, and a freed slot is taken within a fraction of a second.
_BACKOFF_FIRST: Final = 0.01
_BACKOFF_CAP: Final = 0.25
# A release that Redis does not confirm within this time is left to the lease.
_RELEASE_TIMEOUT: Final = 2.0
_RELEASE_FAILURES: tuple[type[BaseException], ...] = (TimeoutError, *REDIS_DOWN)

# Acquire and release take many permits in one call: every attempt made in the same turn of
# the event loop goes in one script (see _Batch). Requests for one target in a batch are
# decided in order, each seeing the permits granted before it.

# KEYS: sessions, starts for each request.  ARGV: max_concurrent, max_per_window, window_ms,
# then token, lease_ms for each request. Returns, for each, {1, 0, 0} when granted, else
# {0, reason, retry_ms}: reason 1 = concurrency (retry_ms unknown: a holder may release at
# any time), 2 = rate (retry_ms = when the oldest start leaves the window; nothing frees a
# rate slot sooner).
_ACQUIRE_LUA: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local max_concurrent = tonumber(ARGV[1])
local max_per_window = tonumber(ARGV[2])
local window_ms = tonumber(ARGV[3])
local replies = {}
for i = 1, #KEYS / 2 do
  local sessions, starts = KEYS[2 * i - 1], KEYS[2 * i]
  local token, lease_ms = ARGV[2 + 2 * i], tonumber(ARGV[3 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', sessions, '-inf', now)
  redis.call('ZREMRANGEBYSCORE', starts, '-inf', now - window_ms)
  if redis.call('ZCARD', sessions) >= max_concurrent then
    replies[i] = {0, 1, 0}
  elseif redis.call('ZCARD', starts) >= max_per_window then
    local oldest = redis.call('ZRANGE', starts, 0, 0, 'WITHSCORES')
    replies[i] = {0, 2, tonumber(oldest[2]) + window_ms - now}
  else
    redis.call('ZADD', sessions, now + lease_ms, token)
    redis.call('ZADD', starts, now, token)
    local last = redis.call('ZRANGE', sessions, -1, -1, 'WITHSCORES')
    redis.call('PEXPIRE', sessions, tonumber(last[2]) - now)
    redis.call('PEXPIRE', starts, window_ms)
    replies[i] = {1, 0, 0}
  end
end
return replies
"""

# KEYS: sessions for each request.  ARGV: token for each.  Idempotent; the rate slot stays
# (it counts starts). Deleting the last member deletes the key; otherwise its TTL still
# covers the longest lease.
_RELEASE_LUA: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  redis.call('ZREM', KEYS[i], ARGV[i])
end
return #KEYS
"""

# KEYS: sessions.  Counts live leases only, without writing.
_IN_USE_LUA: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"""


class _NoReplyInTime(LimiterError):
    """Redis did not answer an attempt before the deadline."""


_Item = TypeVar("_Item")
_Reply = TypeVar("_Reply")
_Reason = Literal["concurrency", "rate"]
_REASONS: Final[dict[int, _Reason]] = {1: "concurrency", 2: "rate"}


@dataclass(frozen=True)
class TargetLimits:
    """Limits for one target server; plain values (the config layer maps its model here)."""

    max_concurrent: int
    max_per_minute: int

    def __post_init__(self) -> None:
        if self.max_concurrent < 1 or self.max_per_minute < 1:
            raise ValueError(f"target limits must be positive integers, got {self}")

    def describe(self) -> str:
        return (
            f"at most {self.max_concurrent} concurrent sessions"
            f" and {self.max_per_minute} new sessions per minute"
        )


class PermitTimeout(LimiterError):
    """No permit for the target before the deadline."""

    def __init__(
        self, target: str, limits: TargetLimits, waited: float, reason: _Reason | None
    ) -> None:
        self.target = target
        self.limits = limits
        self.waited = waited
        self.reason = reason
        refused = f"; last refused by the {reason} limit" if reason else ""
        super().__init__(
            f"no permit for target {target} after waiting {waited:.3f} s"
            f" (limits: {limits.describe()}{refused})"
        )


class LimiterUnavailable(LimiterError):
    """Redis failed (or did not answer before the deadline): the limits cannot be enforced."""

    def __init__(self, target: str, detail: str) -> None:
        self.target = target
        super().__init__(f"target limiter unavailable for {target}: {detail}")


class _Batch(Generic[_Item, _Reply]):
    """Calls made in the same turn of the event loop, sent as one. Checks start and end in
    waves, and one script call costs the client far more than one more item in it."""

    def __init__(self, send: Callable[[list[_Item]], Awaitable[list[_Reply]]]) -> None:
        self._send = send
        self._pending: list[tuple[_Item, asyncio.Future[_Reply]]] = []
        self._sending: set[asyncio.Task[None]] = set()  # strong references

    def call(self, item: _Item) -> asyncio.Future[_Reply]:
        loop = asyncio.get_running_loop()
        if not self._pending:
            loop.call_soon(self._flush)  # after every callback ready in this turn
        future: asyncio.Future[_Reply] = loop.create_future()
        self._pending.append((item, future))
        return future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._deliver(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _deliver(self, batch: list[tuple[_Item, asyncio.Future[_Reply]]]) -> None:
        try:
            replies = await self._send([item for item, _ in batch])
        except Exception as exc:  # each caller decides what a failure means to it
            for _, future in batch:
                if not future.done():  # a caller that gave up has cancelled its future
                    future.set_exception(exc)
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if not future.done():
                future.set_result(reply)


class TargetLimiter:
    """Hands out permits for target servers; one instance per event loop (its client is)."""

    def __init__(
        self,
        redis: redis.asyncio.Redis,
        limits: TargetLimits,
        *,
        keys: Keys = KEYS,
    ) -> None:
        self._redis = redis
        self._limits = limits
        self._keys = keys
        self._acquire_script = redis.register_script(_ACQUIRE_LUA)
        self._release_script = redis.register_script(_RELEASE_LUA)
        self._in_use = redis.register_script(_IN_USE_LUA)
        self._acquire_requests = _Batch(self._acquire_many)
        self._release_requests = _Batch(self._release_many)
        self._token_prefix = uuid.uuid4().hex  # tokens: this prefix and a counter
        self._tokens = itertools.count()
        # Strong references to releases running in the background (see `_spawn_release`).
        self._releases: set[asyncio.Task[None]] = set()

    @property
    def limits(self) -> TargetLimits:
        return self._limits

    def keys(self, target: str) -> tuple[str, str]:
        """The (sessions, starts) keys of `target`."""
        return self._keys.target_sessions(target), self._keys.target_starts(target)

    @asynccontextmanager
    async def permit(self, target: str, *, deadline: float, lease: float) -> AsyncIterator[float]:
        """Wait for a permit for `target`, yield the seconds waited, release it on exit.

        Polls with a short jittered backoff and never waits past `deadline` (a
        ``time.monotonic()`` value), then raises PermitTimeout. `lease` is how long the permit
        may be held before it expires by itself: the caller passes its check timeout plus a
        margin, so a worker that dies holding a permit blocks the target for at most `lease`.
        The permit is released on exit, also on error or cancellation. Raises
        LimiterUnavailable when Redis fails or does not answer before the deadline.
        """
        if not (math.isfinite(lease) and lease > 0):
            raise ValueError(f"lease must be a positive number of seconds, got {lease!r}")
        token = f"{self._token_prefix}-{next(self._tokens)}"
        waited = await self._wait_for_permit(target, token, deadline, math.ceil(lease * 1000))
        try:
            yield waited
        finally:
            # Shielded: a second cancellation while releasing must not leave the slot taken
            # for a whole lease.
            await asyncio.shield(self._spawn_release(target, token))

    async def in_use(self, target: str) -> int:
        """Live (unexpired) permits for `target`, across all workers."""
        sessions, _ = self.keys(target)
        try:
            return int(await self._in_use(keys=[sessions]))
        except REDIS_DOWN as exc:
            raise LimiterUnavailable(target, _describe(exc)) from exc

    async def _wait_for_permit(
        self, target: str, token: str, deadline: float, lease_ms: int
    ) -> float:
        start = time.monotonic()
        answered = False  # has Redis answered at least once during this wait?
        reason: _Reason | None = None
        polling = Backoff(_BACKOFF_FIRST, _BACKOFF_CAP, floor=0.5)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PermitTimeout(target, self._limits, time.monotonic() - start, reason)
            try:
                granted, reason_code, retry_ms = await self._try_acquire(
                    target, token, lease_ms, remaining
                )
            except _NoReplyInTime as exc:
                if answered:
                    # Redis answered earlier: the target was full and time ran out.
                    waited = time.monotonic() - start
                    raise PermitTimeout(target, self._limits, waited, reason) from exc
                raise LimiterUnavailable(
                    target, f"no reply from Redis within {remaining:.3f} s (the deadline)"
                ) from exc
            answered = True
            if granted:
                return time.monotonic() - start
            reason = _REASONS[reason_code]
            delay = polling.next_delay()
            if reason == "rate":
                # Nothing frees a rate slot before the oldest start leaves the window.
                delay = max(delay, retry_ms / 1000 + random.uniform(0, _BACKOFF_FIRST))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PermitTimeout(target, self._limits, time.monotonic() - start, reason)
            # Sleeping to the deadline exactly leaves one last attempt at the deadline.
            await asyncio.sleep(min(delay, remaining))

    async def _try_acquire(
        self, target: str, token: str, lease_ms: int, remaining: float
    ) -> tuple[bool, int, int]:
        """One attempt, bounded by the deadline; returns (granted, reason code, retry ms)."""
        completed = False
        try:
            async with asyncio.timeout(remaining) as budget:
                reply = await self._acquire_requests.call((target, token, lease_ms))
            completed = True
        except TimeoutError as exc:
            if not budget.expired():
                raise
            raise _NoReplyInTime from exc
        except REDIS_DOWN as exc:
            raise LimiterUnavailable(target, _describe(exc)) from exc
        finally:
            if not completed:
                # The script may have run before the reply was lost (deadline, cancellation,
                # dropped connection): give the slot back rather than hold it for a lease.
                self._spawn_release(target, token, level=logging.DEBUG)
        granted, reason_code, retry_ms = (int(value) for value in reply)
        return granted == 1, reason_code, retry_ms

    def _spawn_release(
        self, target: str, token: str, *, level: int = logging.WARNING
    ) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._release_quietly(target, token, level))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)
        return task

    async def _release_quietly(self, target: str, token: str, level: int) -> None:
        """Release, or leave it to the lease: a failed release must not mask the check's outcome."""
        try:
            async with asyncio.timeout(_RELEASE_TIMEOUT):
                await self._release_requests.call((target, token))
        except _RELEASE_FAILURES as exc:
            log.log(
                level,
                "could not release the permit for target %s (%s); it expires with its lease",
                target,
                _describe(exc),
            )

    async def _acquire_many(self, requests: list[tuple[str, str, int]]) -> list[list[int]]:
        """One script for (target, token, lease ms) requests: a reply for each."""
        keys = [key for target, _, _ in requests for key in self.keys(target)]
        args: list[str | int] = [
            self._limits.max_concurrent,
            self._limits.max_per_minute,
            WINDOW_SECONDS * 1000,
        ]
        for _, token, lease_ms in requests:
            args += [token, lease_ms]
        return list(await self._acquire_script(keys=keys, args=args))

    async def _release_many(self, permits: list[tuple[str, str]]) -> list[None]:
        """One script for (target, token) permits."""
        keys = [self.keys(target)[0] for target, _ in permits]
        await self._release_script(keys=keys, args=[token for _, token in permits])
        return [None] * len(permits)


def _describe(exc: BaseException) -> str:
    text = str(exc) or "no detail"
    return f"Redis failed: {type(exc).__name__}: {text}"
