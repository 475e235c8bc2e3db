"""The Celery app every role shares: JSON only, one queue of checks per site.

The worker registers the check task on it; this module only fixes names and delivery
settings, so producers and workers always agree on them. Results do not go through Celery:
see shared/result_queue.py.
"""

from __future__ import annotations

from collections.abc import Iterable

from celery import Celery
from kombu import Exchange, Queue

from smtp_checks.shared.redis_transport import REDIS_SCHEMES
from smtp_checks.shared.redis_transport import TRANSPORT as REDIS_TRANSPORT

CHECK_TASK = "smtp_checks.run_check"


def check_queue(site: str) -> str:
    """The queue of the checks a site's workers run."""
    return f"checks.{site}"


def declare_queue(name: str) -> Queue:
    """A queue bound to an exchange of its own name: no message meant for one queue can
    ever be routed to another (Celery's default would bind every queue to one key)."""
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


def make_app(broker_url: str, sites: Iterable[str], *, visibility_timeout: int = 600) -> Celery:
    """A Celery app on `broker_url` that knows every site's queue.

    Delivery is at least once: a message is acknowledged after its task ran, and given
    back when the worker running it dies (Redis: after `visibility_timeout` seconds).
    """
    app = Celery("smtp_checks", broker=broker_url, set_as_current=False)
    if broker_url.startswith(REDIS_SCHEMES):
        app.conf.broker_transport = REDIS_TRANSPORT
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
        },
        broker_connection_retry_on_startup=True,
        task_queues=[declare_queue(check_queue(site)) for site in sites],
        task_send_sent_event=False,
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
        enable_utc=True,
    )
    return app
