"""Ad hoc checks: one configured check put on its site's queue now, its result awaited.

An ad hoc run goes through the same queue, worker and consumer as a scheduled one (so its
result reaches Centreon too), is recorded in the outstanding ledger like any run, and is
marked `adhoc` so the worker also posts its result where the enqueuer waits for it
(`shared/adhoc_replies.py`). It is not claimed against a slot: asking twice runs twice.

It is always enqueued, even while a run of its check is pending, and never superseded; it
supersedes the run of its check still queued, if any (dropped unrun when a worker takes
it: the ad hoc run, just behind it, measures the same thing). Its stale time is the
check's interval from now, the window a scheduled run has: on a site with no live
worker it becomes an orphan after that time plus the grace, as any run.

Priority: ad hoc runs go to the same queue as scheduled runs, in arrival order. On Redis,
kombu implements priorities as separate lists, which would move every scheduled run off
the queue's own list; on RabbitMQ the queue would need `x-max-priority`, declared
identically by every worker. A separate ad hoc queue per site would be the reliable way to
jump the line; with a queue kept short by enough workers it is not needed.
"""

from __future__ import annotations

import time

import redis
from celery import Celery

from smtp_checks.scheduler.publisher import publish_runs
from smtp_checks.shared.celery_app import config_app
from smtp_checks.shared.config import Config, ScheduledCheck
from smtp_checks.shared.errors import SetupError
from smtp_checks.shared.ledger import Ledger
from smtp_checks.shared.messages import CheckRequest
from smtp_checks.shared.probe.spec import Mode
from smtp_checks.shared.redis_client import connect as connect_redis
from smtp_checks.shared.redis_client import state_redis


def find_check(config: Config, host: str, mode: Mode | str) -> ScheduledCheck:
    """The configured check `mode` of `host`; SetupError naming what exists otherwise."""
    checks = [check for check in config.scheduled_checks() if check.host == host]
    if not checks:
        known = ", ".join(sorted({check.host for check in config.scheduled_checks()})) or "none"
        raise SetupError(f"unknown host '{host}' (hosts in the config: {known})")
    wanted = mode.value if isinstance(mode, Mode) else mode
    for check in checks:
        if check.mode.value == wanted:
            return check
    configured = ", ".join(check.mode.value for check in checks)
    raise SetupError(f"host '{host}' has no {wanted} check (configured: {configured})")


def enqueue_check(
    config: Config, host: str, mode: Mode | str, *, app: Celery, ledger: Ledger
) -> CheckRequest:
    """Put one run of `host`'s `mode` check on its site's queue now; return its request."""
    check = find_check(config, host, mode)
    now = time.time()
    request = CheckRequest.from_scheduled(
        check, scheduled_for=now, stale_at=now + check.interval, adhoc=True
    )
    publish_runs(app, ledger, [request])
    return request


def connect(config: Config, *, wait: float = 0.0) -> tuple[Celery, redis.Redis]:
    """The broker and the state Redis an enqueuer needs; SetupError if one is missing.
    The Redis client's socket timeout outlasts a wait of `wait` seconds for the result."""
    if config.broker_url is None:
        raise SetupError("broker_url is not set: an ad hoc check needs the workers' broker")
    state = state_redis(config)
    if state is None:
        raise SetupError(
            "no Redis for the outstanding runs and the replies: set redis_url "
            "(or use a Redis broker_url)"
        )
    app = config_app(config)
    # redis-py's default socket timeout (5 s) would cut a longer blocking wait short.
    client = connect_redis(state, socket_timeout=max(5.0, wait + 5.0))
    return app, client
