"""The Celery app of a Sentinel broker (shared/celery_app.py, shared/redis_transport.py):
what kombu does with its URL, without a broker."""

from __future__ import annotations

from smtp_checks.shared.celery_app import make_app
from smtp_checks.shared.redis_transport import SentinelTransport

SENTINEL_URL = "sentinel://:pw@10.0.0.1:26379/2;sentinel://10.0.0.2:26379/2"


def test_a_sentinel_broker_keeps_its_first_url_and_our_transport_after_a_switch() -> None:
    """kombu reads `;` as failover alternates and, after a connection error, switches to the
    next one parsed anew: without the master's password and database of the first, and on
    kombu's own transport. Behind Sentinel it must stay on the first (redis-py asks every
    sentinel in turn anyway)."""
    app = make_app(SENTINEL_URL, ["paris"], transport_options={"master_name": "m"})
    connection = app.connection_for_write()
    for _ in range(3):
        connection.maybe_switch_next()
        assert (connection.hostname, connection.password, connection.virtual_host) == (
            "10.0.0.1",
            "pw",
            "2",
        )
        assert connection.transport.__class__ is SentinelTransport
        assert connection.transport_options["master_name"] == "m"
