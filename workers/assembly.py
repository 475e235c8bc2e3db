"""A site's worker assembled from the configuration: its queue source (Redis in batches, or
AMQP), its Redis client, its per-target limiter, its runner and publisher."""

from __future__ import annotations

import redis.asyncio

from smtp_checks.shared.celery_app import check_queue, make_app
from smtp_checks.shared.config import Config
from smtp_checks.shared.errors import SetupError
from smtp_checks.shared.redis_client import connect_async
from smtp_checks.shared.redis_transport import REDIS_SCHEMES
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
    broker_url, state_url = broker_and_redis(config, site)
    app = make_app(broker_url, config.sites, visibility_timeout=config.visibility_timeout)
    # Every check in flight may hold a connection to Redis at once (its permit).
    client = connect_async(state_url, max_connections=concurrency + 16)
    source: QueueSource
    if broker_url.startswith(REDIS_SCHEMES):
        source = RedisQueueSource(connect_async(broker_url), app, check_queue(site))
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


def broker_and_redis(config: Config, site: str) -> tuple[str, str]:
    """The broker and the Redis of a worker of `site`, or SetupError."""
    if site not in config.sites:
        known = ", ".join(sorted(config.sites)) or "none"
        raise SetupError(f"unknown site '{site}' (sites in the config: {known})")
    if config.broker_url is None:
        raise SetupError(
            "broker_url is not set: a worker needs a broker (or use `smtp-checks run`)"
        )
    if config.state_redis_url is None:  # config validation already requires it
        raise SetupError("no Redis for results and limits: set redis_url")
    return config.broker_url, config.state_redis_url


def limiter(config: Config, client: redis.asyncio.Redis) -> TargetLimiter:
    limits = TargetLimits(
        max_concurrent=config.target_limits.max_concurrent,
        max_per_minute=config.target_limits.max_per_minute,
    )
    return TargetLimiter(client, limits)
