"""A site's worker assembled from the configuration: its queue source (Redis in batches, or
AMQP), its Redis client, its per-target limiter, its runner and publisher."""

from __future__ import annotations

import redis.asyncio
from celery import Celery

from smtp_checks.shared.celery_app import check_queue, config_app
from smtp_checks.shared.config import Config
from smtp_checks.shared.errors import SetupError
from smtp_checks.shared.redis_client import RedisAddress, broker_redis, connect_async, state_redis
from smtp_checks.workers.core import Worker
from smtp_checks.workers.metrics import WorkerMetrics
from smtp_checks.workers.publisher import ResultPublisher
from smtp_checks.workers.runner import CheckRunner
from smtp_checks.workers.sources.amqp_queue import AmqpQueueSource
from smtp_checks.workers.sources.base import QueueSource
from smtp_checks.workers.sources.redis_queue import RedisQueueSource
from smtp_checks.workers.target_limits import TargetLimiter, TargetLimits


def build_worker(
    config: Config, site: str, *, name: str, concurrency: int, measured: bool = False
) -> Worker:
    """What `smtp-checks worker` runs for `site`; SetupError when the config cannot.
    `measured`: it records its Prometheus metrics."""
    app, state = broker_and_redis(config, site)
    # Every check in flight may hold a connection to Redis at once (its permit).
    client = connect_async(state, max_connections=concurrency + 16)
    broker = broker_redis(config)
    source: QueueSource
    if broker is not None:
        source = RedisQueueSource(connect_async(broker), app, check_queue(site))
    else:
        source = AmqpQueueSource(app, check_queue(site), prefetch=concurrency)
    return Worker(
        source,
        CheckRunner(limiter(config, client)),
        ResultPublisher(
            client,
            checks=len(config.scheduled_checks()),
            orphan_grace=config.centreon.orphan_grace,
        ),
        name=name,
        site=site,
        concurrency=concurrency,
        rate_limit=config.sites[site].rate_limit,
        metrics=WorkerMetrics(site) if measured else None,
    )


def broker_and_redis(config: Config, site: str) -> tuple[Celery, RedisAddress]:
    """The broker's app and the Redis of a worker of `site`, or SetupError."""
    if site not in config.sites:
        known = ", ".join(sorted(config.sites)) or "none"
        raise SetupError(f"unknown site '{site}' (sites in the config: {known})")
    if config.broker_url is None:
        raise SetupError(
            "broker_url is not set: a worker needs a broker (or use `smtp-checks run`)"
        )
    state = state_redis(config)
    if state is None:  # config validation already requires it
        raise SetupError("no Redis for results and limits: set redis_url")
    return config_app(config), state


def limiter(config: Config, client: redis.asyncio.Redis) -> TargetLimiter:
    limits = TargetLimits(
        max_concurrent=config.target_limits.max_concurrent,
        max_per_minute=config.target_limits.max_per_minute,
    )
    return TargetLimiter(client, limits)
