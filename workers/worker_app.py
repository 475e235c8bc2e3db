"""Build the Celery app of a site's worker from the configuration."""

from __future__ import annotations

import redis
import redis.asyncio
from celery import Celery

from shared.adhoc_replies import AdhocReplies
from shared.celery_app import make_app
from shared.config import Config
from shared.result_queue import ResultQueue
from workers.check_runner import CheckRunner
from workers.check_task import register_check_task
from workers.target_limits import TargetLimiter, TargetLimits


class WorkerSetupError(Exception):
    """The configuration cannot run a worker for this site; the message says why."""


def worker_app(config: Config, site: str) -> Celery:
    if site not in config.sites:
        known = ", ".join(sorted(config.sites)) or "none"
        raise WorkerSetupError(f"unknown site '{site}' (sites in the config: {known})")
    if config.broker_url is None:
        raise WorkerSetupError(
            "broker_url is not set: a worker needs a broker (or use `smtp-checks run`)"
        )
    state = config.state_redis_url
    if state is None:  # config validation already requires it beside any other broker
        raise WorkerSetupError("no Redis for results and limits: set redis_url")
    app = make_app(config.broker_url, config.sites, visibility_timeout=config.visibility_timeout)
    client = redis.Redis.from_url(state)
    register_check_task(
        app,
        CheckRunner(_limiter(config, state)),
        ResultQueue(client),
        rate_limit=config.sites[site].rate_limit,
        replies=AdhocReplies(client),
    )
    return app


def _limiter(config: Config, url: str) -> TargetLimiter:
    limits = TargetLimits(
        max_concurrent=config.target_limits.max_concurrent,
        max_per_minute=config.target_limits.max_per_minute,
    )
    return TargetLimiter(redis.asyncio.Redis.from_url(url), limits)
