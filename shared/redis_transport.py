"""kombu's Redis transport, with one Redis client per channel instead of one per command.

kombu builds a new redis-py client object for each of the two bookkeeping transactions of
every message (recording it unacknowledged, then acknowledging it). Building one costs about
0.15 ms in redis-py 8: with two per message it was a quarter of a worker's CPU per check
(BENCHMARKS.md, "Workers"). A redis-py client is thread-safe and only wraps the channel's
connection pool, so one per channel does the same work, once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Any

from kombu.transport import redis as kombu_redis

REDIS_SCHEMES = ("redis://", "rediss://", "redis+socket://")
TRANSPORT = f"{__name__}:Transport"


def redis_py_url(broker_url: str) -> str:
    """A Redis broker URL as redis-py spells it (kombu's `redis+socket://` is `unix://`)."""
    if broker_url.startswith("redis+socket://"):
        return "unix://" + broker_url.removeprefix("redis+socket://")
    return broker_url


class Channel(kombu_redis.Channel):
    @cached_property
    def _command_client(self) -> Any:
        return self._create_client()  # type: ignore[attr-defined]  # untyped in the stubs

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        yield client or self._command_client


class Transport(kombu_redis.Transport):
    Channel = Channel
