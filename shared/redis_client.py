"""The one way every role connects to Redis, and what "Redis is unavailable" means.

Every Redis client of the roles (the beat's, the workers', the consumer's, the enqueuer's)
comes from here, with timeouts: a Redis that hangs rather than refuses must not hang a
role. A role rides out any error of `REDIS_DOWN` (retrying with shared/backoff.py); any other
Redis error is a bug and is not hidden.
"""

from __future__ import annotations

import redis
import redis.asyncio
import redis.exceptions

# Unreachable, or refusing for a while: full (noeviction), read-only (a replica, during a
# failover), loading its data after a restart.
REDIS_DOWN: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.BusyLoadingError,
    OSError,
)

SOCKET_TIMEOUT = 10.0  # seconds a command may take: every one of ours answers at once
CONNECT_TIMEOUT = 5.0


def redis_py_url(url: str) -> str:
    """A Redis URL as redis-py spells it (kombu's `redis+socket://` is `unix://`)."""
    if url.startswith("redis+socket://"):
        return "unix://" + url.removeprefix("redis+socket://")
    return url


def connect(url: str, *, socket_timeout: float = SOCKET_TIMEOUT) -> redis.Redis:
    """A client for the blocking roles (beat, consumer, enqueue). Give a longer
    `socket_timeout` for a client that blocks on purpose (BLPOP)."""
    return redis.Redis.from_url(
        redis_py_url(url), socket_timeout=socket_timeout, socket_connect_timeout=CONNECT_TIMEOUT
    )


def connect_async(url: str, *, max_connections: int | None = None) -> redis.asyncio.Redis:
    """A client for an event loop. With `max_connections`, a call waits for a free connection
    instead of failing (redis-py's default pool fails past 100): size it to the checks in
    flight, each of which may hold one."""
    url = redis_py_url(url)
    if max_connections is None:
        return redis.asyncio.Redis.from_url(
            url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=CONNECT_TIMEOUT
        )
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=30,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=CONNECT_TIMEOUT,
    )
    return redis.asyncio.Redis(connection_pool=pool)
