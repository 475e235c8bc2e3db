"""kombu's Redis transports (plain and Sentinel), with one Redis client per channel instead
of one per command.

kombu builds a new redis-py client object for each of the two bookkeeping transactions of
every message (recording it unacknowledged, then acknowledging it). Building one costs about
0.15 ms in redis-py 8: with two per message it was a quarter of a worker's CPU per check
(BENCHMARKS.md, "Workers"). A redis-py client is thread-safe and only wraps the channel's
connection pool, so one per channel does the same work, once. Behind Sentinel the pool is
kombu's Sentinel-managed one, which asks the sentinels for the master on every new
connection: the one client follows a failover as kombu's would.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from typing import Any

import kombu.transport
from kombu.transport import redis as kombu_redis

from smtp_checks.shared.redis_urls import is_sentinel_url

KOMBU_REDIS_SCHEMES = ("redis://", "rediss://", "redis+socket://")


class _OneClientPerChannel:
    @cached_property
    def _command_client(self) -> Any:
        return self._create_client()  # type: ignore[attr-defined]  # untyped in the stubs

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        yield client or self._command_client


class Channel(_OneClientPerChannel, kombu_redis.Channel):
    pass


class SentinelChannel(_OneClientPerChannel, kombu_redis.SentinelChannel):
    pass


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel


# kombu reads a `;`-separated URL as failover alternates and, after a connection error,
# switches to the next one, parsed anew: its transport from its scheme (kombu's own, not
# ours, unless the alias names ours) and its password and database from that part alone.
# Behind Sentinel the alternates add nothing (redis-py asks every sentinel in turn), so a
# Sentinel broker always stays on its first URL, the one that carries the master's
# password and database.
kombu.transport.TRANSPORT_ALIASES["sentinel"] = f"{__name__}:SentinelTransport"


def first_url_only(urls: Sequence[str]) -> Iterator[str]:
    """kombu's failover strategy for a Sentinel broker: the first URL, again."""
    return itertools.repeat(urls[0])


def transport_for(broker_url: str) -> str | None:
    """Our transport for a Redis broker URL (None: not Redis, kombu chooses)."""
    if is_sentinel_url(broker_url):
        return f"{__name__}:SentinelTransport"
    if broker_url.startswith(KOMBU_REDIS_SCHEMES):
        return f"{__name__}:Transport"
    return None
