"""The one way every role connects to Redis, and what "Redis is unavailable" means.

Every Redis client of the roles (the beat's, the workers', the consumer's, the enqueuer's,
`status`'s) comes from here, with timeouts: a Redis that hangs rather than refuses must not
hang a role. A role rides out any error of `REDIS_DOWN` (retrying with shared/backoff.py);
any other Redis error is a bug and is not hidden.

A Redis is a `RedisAddress`: a plain URL, or a Sentinel URL with the name of the master the
sentinels watch. Behind Sentinel a client asks the sentinels where the master is whenever
it opens a connection, so after a failover its next connection goes to the promoted
replica; one still open to a demoted master fails (read-only: `REDIS_DOWN`) and is replaced.
Lua scripts are sent by hash, and sent again in full when the new master answers NOSCRIPT
(redis-py's `Script` does this, in pipelines too).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.exceptions
import redis.sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from smtp_checks.shared.backoff import Backoff
from smtp_checks.shared.config import Config
from smtp_checks.shared.errors import SetupError
from smtp_checks.shared.redis_urls import (
    SentinelUrl,
    is_redis_url,
    is_sentinel_url,
    parse_sentinel_url,
    redis_py_url,
)
from smtp_checks.shared.secrets import resolve_secret

# Unreachable, or refusing for a while: full (noeviction), read-only (a replica, during a
# failover), loading its data after a restart; behind Sentinel, no sentinel knows a master.
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
# Seconds a sentinel gets to answer where the master is: a dead one must not hold up the
# question to the next.
SENTINEL_TIMEOUT = 1.0
# Seconds at most between two attempts to reach Redis while it is away: an attempt costs
# next to nothing (a refused connection, a question to the sentinels), and after a restart
# or a failover every role is back within this.
RETRY_CAP = 2.0


def redis_backoff() -> Backoff:
    """How a role waits between its attempts to reach Redis again."""
    return Backoff(base=0.1, cap=RETRY_CAP)


@dataclass(frozen=True)
class RedisAddress:
    """Where a Redis is. `sentinel_password` is a secret reference (`env:NAME`,
    `file:PATH`), resolved on the machine that connects."""

    url: str = field(repr=False)  # it may hold the master's password
    sentinel_master: str | None = None
    sentinel_password: str | None = None

    @property
    def behind_sentinel(self) -> bool:
        return is_sentinel_url(self.url)

    def sentinel(self) -> tuple[SentinelUrl, str, dict[str, Any]]:
        """The parsed Sentinel URL, the master's name and how to connect to the sentinels
        themselves (redis-py's `sentinel_kwargs`); SetupError when half configured."""
        if self.sentinel_master is None:
            raise SetupError("a Sentinel URL needs sentinel_master: the name of the master")
        try:
            parsed = parse_sentinel_url(self.url)
        except ValueError as error:
            raise SetupError(f"invalid Sentinel URL: {error}") from None
        kwargs: dict[str, Any] = {
            "socket_timeout": SENTINEL_TIMEOUT,
            "socket_connect_timeout": SENTINEL_TIMEOUT,
            # A sentinel that does not answer is passed over for the next, not retried
            # with backoff (redis-py's default): the question goes round them all at once.
            "retry": Retry(NoBackoff(), 0),
        }
        if self.sentinel_password is not None:
            kwargs["password"] = resolve_secret(self.sentinel_password)
        return parsed, self.sentinel_master, kwargs


def _with_sentinel_settings(config: Config, url: str) -> RedisAddress:
    """`url` with the config's Sentinel settings (used only if it is a Sentinel URL)."""
    password = config.sentinel_password
    return RedisAddress(url, config.sentinel_master, str(password) if password else None)


def state_redis(config: Config) -> RedisAddress | None:
    """The Redis of per-target limits and state: `redis_url`, else a Redis broker."""
    url = config.state_redis_url
    return _with_sentinel_settings(config, url) if url else None


def broker_redis(config: Config) -> RedisAddress | None:
    """The broker's Redis, None when the broker is not Redis."""
    url = config.broker_url
    return _with_sentinel_settings(config, url) if url and is_redis_url(url) else None


def connect(address: RedisAddress | str, *, socket_timeout: float = SOCKET_TIMEOUT) -> redis.Redis:
    """A client for the blocking roles (beat, consumer, enqueue). Give a longer
    `socket_timeout` for a client that blocks on purpose (BLPOP)."""
    address = _address(address)
    if not address.behind_sentinel:
        return redis.Redis.from_url(
            redis_py_url(address.url),
            socket_timeout=socket_timeout,
            socket_connect_timeout=CONNECT_TIMEOUT,
        )
    parsed, master, sentinel_kwargs = address.sentinel()
    # Any: redis-py typed its Sentinel in 8.x only; the ignores older releases need would
    # be unused on newer ones.
    sentinels: Any = redis.sentinel.Sentinel(
        list(parsed.sentinels), sentinel_kwargs=sentinel_kwargs
    )
    client = sentinels.master_for(
        master,
        socket_timeout=socket_timeout,
        socket_connect_timeout=CONNECT_TIMEOUT,
        **_master_kwargs(parsed),
    )
    return cast(redis.Redis, client)


def connect_async(
    address: RedisAddress | str, *, max_connections: int | None = None
) -> redis.asyncio.Redis:
    """A client for an event loop. With `max_connections`, a call waits for a free connection
    instead of failing (redis-py's default pool fails past 100): size it to the checks in
    flight, each of which may hold one."""
    address = _address(address)
    options: dict[str, Any] = {
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": CONNECT_TIMEOUT,
    }
    if max_connections is not None:
        options.update(max_connections=max_connections, timeout=30)
    if not address.behind_sentinel:
        url = redis_py_url(address.url)
        if max_connections is None:
            return redis.asyncio.Redis.from_url(url, **options)
        pool = redis.asyncio.BlockingConnectionPool.from_url(url, **options)
        return redis.asyncio.Redis(connection_pool=pool)
    parsed, master, sentinel_kwargs = address.sentinel()
    sentinels: Any = redis.asyncio.sentinel.Sentinel(
        list(parsed.sentinels), sentinel_kwargs=sentinel_kwargs
    )
    pool_class = (
        redis.asyncio.sentinel.SentinelConnectionPool
        if max_connections is None
        else _BlockingSentinelPool
    )
    client = sentinels.master_for(
        master, connection_pool_class=pool_class, **_master_kwargs(parsed), **options
    )
    return cast(redis.asyncio.Redis, client)


def sentinel_transport_options(address: RedisAddress) -> dict[str, Any]:
    """kombu's `broker_transport_options` for a broker behind Sentinel (the master's
    password and database it reads from the URL itself)."""
    _, master, sentinel_kwargs = address.sentinel()
    return {"master_name": master, "sentinel_kwargs": sentinel_kwargs}


class _BlockingSentinelPool(
    redis.asyncio.sentinel.SentinelConnectionPool, redis.asyncio.BlockingConnectionPool
):
    """Sentinel's pool (it finds the master) that waits for a free connection (the blocking
    pool's `get_connection`, `max_connections` and `timeout`)."""


def _address(address: RedisAddress | str) -> RedisAddress:
    return address if isinstance(address, RedisAddress) else RedisAddress(address)


def _master_kwargs(parsed: SentinelUrl) -> dict[str, Any]:
    return {"db": parsed.db, "username": parsed.username, "password": parsed.password}
