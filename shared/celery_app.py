"""The Celery app every role shares: JSON only, one queue of checks per site.

The worker registers the check task on it; this module only fixes names and delivery
settings, so producers and workers always agree on them. Results do not go through Celery:
see shared/result_queue.py.

On RabbitMQ the check queues are classic or quorum queues (`broker_queue_type`). A quorum
queue is replicated over the cluster's nodes (Raft): a node lost loses no queued check.
Both kinds are durable and neither has priorities here; a quorum queue's messages are always
persistent, the queue takes no global QoS (the workers' prefetch is per consumer) and an
existing queue cannot change kind (RabbitMQ refuses the declaration: delete it first).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from celery import Celery
from kombu import Exchange, Queue

from smtp_checks.shared.config import Config
from smtp_checks.shared.redis_client import broker_redis, sentinel_transport_options
from smtp_checks.shared.redis_transport import first_url_only, transport_for
from smtp_checks.shared.redis_urls import is_sentinel_url

QueueType = Literal["classic", "quorum"]

CHECK_TASK = "smtp_checks.run_check"


def check_queue(site: str) -> str:
    """The queue of the checks a site's workers run."""
    return f"checks.{site}"


def declare_queue(name: str, queue_type: QueueType = "classic") -> Queue:
    """A queue bound to an exchange of its own name: no message meant for one queue can
    ever be routed to another (Celery's default would bind every queue to one key)."""
    arguments = {"x-queue-type": "quorum"} if queue_type == "quorum" else None
    return Queue(name, Exchange(name, type="direct"), routing_key=name, queue_arguments=arguments)


def queue_of(app: Celery, name: str) -> Queue:
    """The queue `name` as `app` declares it (its kind included)."""
    queue: Queue
    for queue in app.conf.task_queues:
        if queue.name == name:
            return queue
    raise KeyError(name)


def config_app(config: Config) -> Celery:
    """The app of `config`'s broker (`broker_url` must be set)."""
    assert config.broker_url is not None, "checked by the caller, with its own message"
    address = broker_redis(config)
    sentinel = address if address is not None and address.behind_sentinel else None
    return make_app(
        config.broker_url,
        config.sites,
        visibility_timeout=config.visibility_timeout,
        queue_type=config.broker_queue_type,
        transport_options=sentinel_transport_options(sentinel) if sentinel else None,
    )


def make_app(
    broker_url: str,
    sites: Iterable[str],
    *,
    visibility_timeout: int = 600,
    queue_type: QueueType = "classic",
    transport_options: Mapping[str, Any] | None = None,
) -> Celery:
    """A Celery app on `broker_url` that knows every site's queue; `transport_options`
    add to ours (a Sentinel broker's master name).

    Delivery is at least once: a message is acknowledged after its task ran, and given
    back when the worker running it dies (Redis: after `visibility_timeout` seconds).
    """
    app = Celery("smtp_checks", broker=broker_url, set_as_current=False)
    transport = transport_for(broker_url)
    if transport is not None:
        app.conf.broker_transport = transport
    if is_sentinel_url(broker_url):
        app.conf.broker_failover_strategy = first_url_only
    app.conf.update(
        # Workers accept JSON only: a pickle message is refused, never deserialised.
        task_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        # Results travel on our results queue (shared/result_queue.py), not a result backend.
        task_ignore_result=True,
        task_store_errors_even_if_ignored=False,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One message per execution slot: prefetched messages age towards the visibility
        # timeout without running, and rate-limited ones block the others.
        worker_prefetch_multiplier=1,
        broker_transport_options={
            "visibility_timeout": visibility_timeout,
            # kombu sweeps for a dead worker's messages every interval x throttle seconds
            # (100 s by default): sweep often enough that the visibility timeout is what
            # decides how soon a check comes back.
            "unacked_restore_interval": max(1, min(10, visibility_timeout // 4)),
            "unacked_restore_throttle": 1,
            # The sweep holds a lock; a worker killed while holding it would stop every sweep
            # for kombu's default 300 s. A sweep takes milliseconds.
            "unacked_mutex_expire": 10,
            **(transport_options or {}),
        },
        broker_connection_retry_on_startup=True,
        task_queues=[declare_queue(check_queue(site), queue_type) for site in sites],
        task_send_sent_event=False,
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
        enable_utc=True,
    )
    return app
