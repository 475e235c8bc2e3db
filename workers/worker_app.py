"""Assemble a site's worker from the configuration: the check consumer that
`smtp-checks worker` runs, or the Celery app that `celery -A workers.celery_main` runs."""

from __future__ import annotations

import redis
import redis.asyncio
from celery import Celery

from smtp_checks.shared.celery_app import make_app
from smtp_checks.shared.config import Config
from smtp_checks.shared.redis_transport import REDIS_SCHEMES, redis_py_url
from smtp_checks.workers.check_consumer import CheckConsumer
from smtp_checks.workers.check_runner import CheckRunner
from smtp_checks.workers.check_task import register_check_task
from smtp_checks.workers.redis_consumer import RedisCheckConsumer
from smtp_checks.workers.result_publisher import ResultPublisher
from smtp_checks.workers.target_limits import TargetLimiter, TargetLimits

# A Redis that hangs (rather than refuses) must not hang the worker: its calls fail after
# this long and are retried with a backoff. Every call the worker makes answers at once.
_SOCKET_TIMEOUT = 10.0
_CONNECT_TIMEOUT = 5.0


class WorkerSetupError(Exception):
    """The configuration cannot run a worker for this site; the message says why."""


def check_consumer(
    config: Config, site: str, *, worker: str, concurrency: int
) -> CheckConsumer | RedisCheckConsumer:
    """What `smtp-checks worker` runs: on a Redis broker, one event loop that takes checks
    in batches; on RabbitMQ, a consumer thread beside the loop."""
    broker_url, state = _urls(config, site)
    app = make_app(broker_url, config.sites, visibility_timeout=config.visibility_timeout)
    client = _async_redis(state, concurrency)
    runner = CheckRunner(_limiter(config, client))
    rate_limit = config.sites[site].rate_limit
    if broker_url.startswith(REDIS_SCHEMES):
        return RedisCheckConsumer(
            app,
            site,
            runner,
            ResultPublisher(client),
            redis.asyncio.Redis.from_url(
                redis_py_url(broker_url),
                socket_timeout=_SOCKET_TIMEOUT,
                socket_connect_timeout=_CONNECT_TIMEOUT,
            ),
            worker=worker,
            concurrency=concurrency,
            rate_limit=rate_limit,
        )
    return CheckConsumer(
        app,
        site,
        runner,
        ResultPublisher(client),
        worker=worker,
        concurrency=concurrency,
        rate_limit=rate_limit,
    )


def celery_worker_app(config: Config, site: str) -> Celery:
    """For Celery's own command line: the check task in Celery's thread pool (a thread per
    check in flight: simpler to embed, but slower and with a less exact `time`)."""
    broker_url, state = _urls(config, site)
    app = make_app(broker_url, config.sites, visibility_timeout=config.visibility_timeout)
    client = redis.asyncio.Redis.from_url(state)
    register_check_task(
        app,
        CheckRunner(_limiter(config, client)),
        ResultPublisher(client),
        rate_limit=config.sites[site].rate_limit,
    )
    return app


def _urls(config: Config, site: str) -> tuple[str, str]:
    """The broker and the Redis of a worker of `site`, or WorkerSetupError."""
    if site not in config.sites:
        known = ", ".join(sorted(config.sites)) or "none"
        raise WorkerSetupError(f"unknown site '{site}' (sites in the config: {known})")
    if config.broker_url is None:
        raise WorkerSetupError(
            "broker_url is not set: a worker needs a broker (or use `smtp-checks run`)"
        )
    if config.state_redis_url is None:  # config validation already requires it
        raise WorkerSetupError("no Redis for results and limits: set redis_url")
    return config.broker_url, config.state_redis_url


def _async_redis(url: str, concurrency: int) -> redis.asyncio.Redis:
    """One client for the loop's permits and results. Every check in flight may hold a
    connection at once: a pool smaller than that fails calls (redis-py's default, 100)
    instead of making them wait; this one waits."""
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=concurrency + 16,
        timeout=30,
        socket_timeout=_SOCKET_TIMEOUT,
        socket_connect_timeout=_CONNECT_TIMEOUT,
    )
    return redis.asyncio.Redis(connection_pool=pool)


def _limiter(config: Config, client: redis.asyncio.Redis) -> TargetLimiter:
    limits = TargetLimits(
        max_concurrent=config.target_limits.max_concurrent,
        max_per_minute=config.target_limits.max_per_minute,
    )
    return TargetLimiter(client, limits)
