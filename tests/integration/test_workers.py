"""Real `smtp-checks worker` processes on a real broker against real SMTP servers.

Redis database 12 is the broker (RabbitMQ for the broker test); each test flushes it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu import Connection

from smtp_checks.scheduler.publisher import publish_runs, send_runs
from smtp_checks.shared.celery_app import check_queue, declare_queue
from smtp_checks.shared.heartbeats import ALIVE_FOR, Heartbeat, live_sites, read_heartbeats
from smtp_checks.shared.keys import KEYS
from smtp_checks.shared.ledger import Ledger, NewRun, Verdict
from smtp_checks.shared.messages import CheckRequest, Outcome
from tests.redis_fixtures import flushed_redis_db
from tests.smtp_servers import TEST_PASSWORD, TEST_USER, RawServer, SmtpServer, refused_port
from tests.worker_harness import (
    RABBITMQ_URL,
    Deployment,
    dead_letters,
    publish,
    require_rabbitmq,
    result_of,
    results,
)

WORKER_DB = 12


@pytest.fixture
def broker_url() -> Iterator[str]:
    yield from flushed_redis_db(WORKER_DB)


def wait_for_value(read: Callable[[], Any], wanted: Any = None, timeout: float = 15.0) -> Any:
    """What `read()` returns once it is `wanted` (or, with no `wanted`, once it is truthy)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if (value == wanted) if wanted is not None else value:
            return value
        assert time.monotonic() < deadline, f"still {value!r} after {timeout} s"
        time.sleep(0.1)


def host(name: str, server: SmtpServer | RawServer | None, **fields: Any) -> dict[str, Any]:
    port = server.port if server is not None else refused_port()
    return {
        "name": name,
        "address": "127.0.0.1",
        "port": port,
        "site": "paris",
        "tls": "none",
        **fields,
    }


def settings(broker_url: str, hosts: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"broker_url": broker_url, "sites": {"paris": {}}, "hosts": hosts, **extra}


Deploy = Callable[[dict[str, Any]], Deployment]


@pytest.fixture
def deploy(tmp_path: Path) -> Iterator[Deploy]:
    """Write a deployment's config in the test's directory; its workers stop at the end."""
    made: list[Deployment] = []

    def write(settings: dict[str, Any]) -> Deployment:
        made.append(Deployment.write(tmp_path, settings))
        return made[-1]

    yield write
    for item in made:
        item.stop_workers()


def test_every_outcome_becomes_a_result(
    broker_url: str,
    deploy: Deploy,
    plain_server: SmtpServer,
    smtp_server_factory: Any,
    raw_server_factory: Any,
) -> None:
    refusing = smtp_server_factory(rcpt_reply="550 5.1.1 no such user")
    silent = raw_server_factory("silent")
    login = {"login": {}}
    auth = {"username": TEST_USER, "password": "env:SMTP_TEST_PASSWORD"}
    d = deploy(settings(broker_url, [
        host("ok", plain_server, checks=login),
        host("auth-ok", plain_server, checks=login, **auth),
        host("auth-bad", plain_server, checks=login, username=TEST_USER, password="env:SMTP_WRONG_PASSWORD"),
        host("no-secret", plain_server, checks=login, username=TEST_USER, password="env:SMTP_NOT_SET"),
        host("refused", None, checks=login),
        host("silent", silent, checks={"login": {"timeout": 1}}),
        host("rejecting", refusing, checks={"message": {"from": "a@example.com", "to": "b@example.net"}}),
        host("late", plain_server, checks=login),
    ]))  # fmt: skip
    d.start_worker(
        "paris", name="w1",
        env={"SMTP_TEST_PASSWORD": TEST_PASSWORD, "SMTP_WRONG_PASSWORD": "not-the-password"},
    )  # fmt: skip
    app = d.app()
    for check in d.config.scheduled_checks():
        late = check.host == "late"  # taken past its next slot: run all the same
        publish(
            app, d.request(check.check_id, late=120 if late else 0, stale_in=60 if late else 120)
        )
    got = {r.host: r for r in results(broker_url, 8)}
    assert {name: r.outcome for name, r in got.items()} == {
        "ok": Outcome.SUCCESS,
        "auth-ok": Outcome.SUCCESS,
        "auth-bad": Outcome.AUTH,
        "no-secret": Outcome.CREDENTIAL,
        "refused": Outcome.REFUSED,
        "silent": Outcome.TIMEOUT,
        "rejecting": Outcome.REJECTED,
        "late": Outcome.SUCCESS,
    }
    assert all(r.worker == "w1@test" for r in got.values())
    assert got["ok"].time is not None and got["ok"].time < 5
    assert got["ok"].queue_wait >= 0 and got["ok"].started_at is not None
    assert got["silent"].detail == "timeout after 1s waiting for the banner"
    assert "env:SMTP_NOT_SET" in got["no-secret"].detail and "w1@test" in got["no-secret"].detail
    assert got["late"].time is not None and got["late"].queue_wait >= 120
    assert "550 5.1.1 no such user" in got["rejecting"].detail
    assert [a.success for a in plain_server.auth_attempts] == [True, False] or [
        a.success for a in plain_server.auth_attempts
    ] == [False, True]
    # The credential-less check never reached the server; the late one did.
    assert plain_server.session_count == 4


def test_a_superseded_run_is_dropped_unrun_and_counted_and_a_published_one_settled(
    broker_url: str, deploy: Deploy, plain_server: SmtpServer
) -> None:
    d = deploy(settings(broker_url, [host("mx1", plain_server, checks={"login": {}})]))
    client = redis.Redis.from_url(broker_url)
    ledger = Ledger(client)
    scheduled = d.request("mx1/login", late=30)
    newer = CheckRequest.from_scheduled(
        d.check("mx1/login"), scheduled_for=time.time(), stale_at=time.time() + 60, adhoc=True
    )
    # A scheduled run queued, then an ad hoc run of the same check: the newer one.
    assert ledger.enqueue([NewRun(scheduled)]) == [Verdict.ENQUEUED]
    send_runs(d.app(), [scheduled])
    publish_runs(d.app(), ledger, [newer])
    d.start_worker("paris", name="w1")
    (result,) = results(broker_url, 1)
    assert result.run_id == newer.run_id and result.outcome is Outcome.SUCCESS
    assert result.status == 0  # the plugin status, worked out by the worker
    wait_for_value(lambda: client.hget(KEYS.counters, "superseded"), b"1")
    assert plain_server.session_count == 1  # the superseded run never reached the server
    # Both runs are settled: the newer where its result was published, the other as dropped.
    assert ledger.count() == 0 and ledger.pending_count() == 0
    assert results(broker_url, 1, timeout=1.0) == []


def test_a_worker_beats_with_its_site_queue_and_figures(
    broker_url: str, deploy: Deploy, plain_server: SmtpServer
) -> None:
    d = deploy(settings(broker_url, [host("mx1", plain_server, checks={"login": {}})]))
    client = redis.Redis.from_url(broker_url)
    before = time.time()
    d.start_worker("paris", name="w1", concurrency=7)
    publish(d.app(), d.request("mx1/login"))
    results(broker_url, 1)

    def beat() -> Heartbeat | None:
        found = [h for h in read_heartbeats(client, time.time()) if h.role == "worker"]
        return found[0] if found and found[0].figure("checks_per_minute") == 1 else None

    heartbeat = wait_for_value(beat)
    assert (heartbeat.name, heartbeat.site) == ("w1@test", "paris")
    assert heartbeat.figure("queue") == "checks.paris"
    assert heartbeat.figure("concurrency") == 7
    assert heartbeat.figure("queue_depth") == 0
    empty_at = heartbeat.figure("queue_empty_at")
    assert isinstance(empty_at, float) and empty_at >= before
    sites = live_sites(read_heartbeats(client, time.time()), time.time())
    assert sites["paris"].workers == 1 and sites["paris"].checks_per_minute == 1
    # Stopped, it says so in a last heartbeat: its site is dead at once, not ALIVE_FOR later,
    # and the heartbeat is kept for an operator to see.
    d.stop_workers()
    now = time.time()
    (last,) = [h for h in read_heartbeats(client, now) if h.role == "worker"]
    assert last.stopped and now - last.at < ALIVE_FOR
    assert live_sites(read_heartbeats(client, now), now) == {}


def test_pickle_is_refused_and_the_worker_carries_on(
    broker_url: str, deploy: Deploy, plain_server: SmtpServer
) -> None:
    d = deploy(settings(broker_url, [host("mx1", plain_server, checks={"login": {}})]))
    d.start_worker("paris", name="w1")
    app = d.app()
    request = d.request("mx1/login")
    publish(app, request, serializer="pickle")
    publish(app, d.request("mx1/login"))
    (only,) = results(broker_url, 1, timeout=15)  # the JSON one, published after the pickle
    assert only.outcome is Outcome.SUCCESS and only.run_id != request.run_id
    assert results(broker_url, 1, timeout=1.0) == []  # nothing of the pickle one
    assert plain_server.session_count == 1
    assert "pickle" in d.log_text()  # Celery says what it refused


def test_invalid_message_is_dead_lettered_without_secrets(
    broker_url: str, deploy: Deploy, plain_server: SmtpServer
) -> None:
    d = deploy(settings(broker_url, [host("mx1", plain_server, checks={"login": {}})]))
    d.start_worker("paris", name="w1")
    app = d.app()
    app.send_task(
        "smtp_checks.run_check",
        args=[
            {
                "check_id": "mx1/login",
                "password": "hunter2-secret",
                "nested": {"api_token": "tok-123"},
            }
        ],
        queue=check_queue("paris"),
    )
    publish(app, d.request("mx1/login"))
    (letter,) = dead_letters(broker_url, 1)
    assert letter["reason"] == "invalid CheckRequest"
    # Version 2 carries the run's identity whole: that is what the letter says is missing.
    assert any(error.startswith("identity: ") for error in letter["errors"])
    assert letter["message"]["password"] == "<redacted>"
    assert letter["message"]["nested"]["api_token"] == "<redacted>"
    assert "hunter2" not in str(letter) and "hunter2" not in d.log_text()
    (result,) = results(broker_url, 1)
    assert result.outcome is Outcome.SUCCESS  # the worker is alive and well


def test_a_killed_workers_check_is_redelivered_to_another(
    broker_url: str, deploy: Deploy, smtp_server_factory: Any
) -> None:
    slow = smtp_server_factory(banner_delay=2.0)
    d = deploy(
        settings(
            broker_url,
            [host("mx1", slow, checks={"login": {"timeout": 3, "interval": 60}})],
            visibility_timeout=6,  # at least twice the timeout: no second delivery mid-check
        ),
    )
    first = d.start_worker("paris", name="doomed")
    request = d.request("mx1/login")
    publish(d.app(), request)
    assert slow.wait_for_sessions(1, timeout=20)
    first.send_signal(signal.SIGKILL)
    first.wait()
    d.start_worker("paris", name="rescuer")
    (result,) = results(broker_url, 1, timeout=40)
    assert result.run_id == request.run_id
    assert result.worker == "rescuer@test"
    assert result.outcome is Outcome.SUCCESS
    assert slow.session_count == 2


def test_a_stopped_worker_finishes_its_checks_before_it_exits(
    broker_url: str, deploy: Deploy, smtp_server_factory: Any
) -> None:
    slow = smtp_server_factory(banner_delay=1.5)
    d = deploy(settings(broker_url, [host("mx1", slow, checks={"login": {"timeout": 5}})]))
    worker = d.start_worker("paris", name="w1")
    request = d.request("mx1/login")
    publish(d.app(), request)
    assert slow.wait_for_sessions(1, timeout=20)

    worker.send_signal(signal.SIGTERM)

    assert worker.wait(timeout=20) == 0
    (result,) = results(broker_url, 1, timeout=1)
    assert result.run_id == request.run_id and result.outcome is Outcome.SUCCESS
    client = redis.Redis.from_url(broker_url)
    assert client.hlen("unacked") == 0  # acknowledged before the worker exited
    assert client.llen(check_queue("paris")) == 0


def test_target_limits_hold_across_two_workers(
    broker_url: str, deploy: Deploy, smtp_server_factory: Any
) -> None:
    busy = smtp_server_factory(hold_seconds=0.4)
    d = deploy(
        settings(
            broker_url,
            [
                host(f"alias{i}", busy, checks={"login": {"timeout": 20, "interval": 60}})
                for i in range(12)
            ],
            target_limits={"max_concurrent": 2, "max_per_minute": 1000},
        ),
    )
    d.start_worker("paris", name="w1", concurrency=10)
    d.start_worker("paris", name="w2", concurrency=10)
    app = d.app()
    for check in d.config.scheduled_checks():
        publish(app, d.request(check.check_id))
    got = results(broker_url, 12, timeout=40)
    assert [r.outcome for r in got] == [Outcome.SUCCESS] * 12
    assert {r.worker for r in got} == {"w1@test", "w2@test"}
    assert busy.max_concurrent_sessions == 2
    assert max(r.permit_wait for r in got) > 0  # some waited, and that is not in `time`
    assert all(r.time is not None and r.time < 2 for r in got)


def test_no_password_in_redis_messages_or_logs(
    broker_url: str, deploy: Deploy, plain_server: SmtpServer
) -> None:
    secret = {"username": TEST_USER, "password": "env:SMTP_TEST_PASSWORD"}
    d = deploy({
        **settings(broker_url, [
            host("mx1", plain_server, checks={"login": {}}, **secret),
            {**host("mx2", plain_server, checks={"login": {}}, **secret), "site": "lyon"},
        ]),
        "sites": {"paris": {}, "lyon": {}},
    })  # fmt: skip
    d.start_worker("paris", name="w1", env={"SMTP_TEST_PASSWORD": TEST_PASSWORD})
    app = d.app()
    publish(app, d.request("mx1/login"))
    publish(app, d.request("mx1/login"))
    publish(app, d.request("mx2/login"))  # lyon has no worker: it stays queued
    (first,) = results(broker_url, 1)
    assert first.outcome is Outcome.SUCCESS and plain_server.auth_attempts[0].success
    client = redis.Redis.from_url(broker_url)
    assert plain_server.wait_for_sessions(2)
    assert client.llen("checks.lyon") == 1
    dump = b""
    for key in client.scan_iter():
        kind = client.type(key)
        if kind == b"string":
            dump += client.get(key) or b""
        elif kind == b"list":
            dump += b"".join(client.lrange(key, 0, -1))
        elif kind == b"hash":
            dump += b"".join(k + v for k, v in client.hgetall(key).items())
        elif kind == b"zset":
            dump += b"".join(m for m, _ in client.zrange(key, 0, -1, withscores=True))
        elif kind == b"set":
            dump += b"".join(client.smembers(key))
        dump += key
    assert b"env:SMTP_TEST_PASSWORD" in dump  # the reference travels (lyon's request)...
    assert TEST_PASSWORD.encode() not in dump  # ...never the password
    assert TEST_PASSWORD not in d.log_text()
    assert TEST_PASSWORD not in first.model_dump_json()


def test_site_rate_limit_spaces_checks(
    broker_url: str, deploy: Deploy, plain_server: SmtpServer
) -> None:
    d = deploy({
        **settings(broker_url, [host(f"h{i}", plain_server, checks={"login": {}}) for i in range(6)]),
        "sites": {"paris": {"rate_limit": "2/s"}},
    })  # fmt: skip
    d.start_worker("paris", name="w1")
    app = d.app()
    for check in d.config.scheduled_checks():
        publish(app, d.request(check.check_id))
    got = results(broker_url, 6, timeout=30)
    starts = sorted(r.started_at or 0 for r in got)
    assert len(got) == 6
    assert starts[-1] - starts[0] >= 2.0  # 6 checks at 2 a second cannot start within 2 s


def test_rabbitmq_broker(broker_url: str, deploy: Deploy, plain_server: SmtpServer) -> None:
    require_rabbitmq()
    site = f"rabbit{uuid.uuid4().hex[:8]}"  # queues of our own on a shared vhost
    state_db = broker_url  # Redis still holds the per-target limits
    d = deploy({
        "broker_url": RABBITMQ_URL, "redis_url": state_db, "sites": {site: {}},
        "hosts": [{**host("mx1", plain_server, checks={"login": {}}), "site": site}],
    })  # fmt: skip
    d.start_worker(site, name="w1")
    try:
        pickled, request = d.request("mx1/login"), d.request("mx1/login")
        publish(d.app(), pickled, serializer="pickle")
        publish(d.app(), request)
        result = result_of(state_db, request.run_id)
        assert result is not None
        assert result.outcome is Outcome.SUCCESS and result.site == site
        assert result_of(state_db, pickled.run_id, timeout=1.0) is None
        assert "refused a message with content type 'application/x-python-serialize'" in (
            d.log_text()
        )
    finally:
        d.stop_workers()
        delete_rabbitmq_queue(check_queue(site))


def delete_rabbitmq_queue(name: str) -> None:
    with Connection(RABBITMQ_URL) as connection:
        channel = connection.channel()
        channel.queue_delete(name)
        channel.exchange_delete(name)


def test_a_quorum_queue_gives_a_killed_workers_checks_to_another(
    broker_url: str, deploy: Deploy, smtp_server_factory: Any
) -> None:
    require_rabbitmq()
    site = f"quorum{uuid.uuid4().hex[:8]}"  # a queue of our own on the shared vhost
    slow = smtp_server_factory(banner_delay=1.5)  # sessions long enough for a kill to find
    d = deploy({
        "broker_url": RABBITMQ_URL, "redis_url": broker_url, "sites": {site: {}},
        "broker_queue_type": "quorum", "target_limits": {"max_concurrent": 10},
        "hosts": [{**host(f"mx{n}", slow, checks={"login": {}}), "site": site} for n in range(3)],
    })  # fmt: skip
    try:
        first = d.start_worker(site, name="w1")
        requests = [d.request(f"mx{n}/login") for n in range(3)]
        for request in requests:
            publish(d.app(), request)
        wait_for_value(lambda: slow.active_sessions == 3 or None, True)
        first.kill()  # SIGKILL, its three checks in flight, unacknowledged
        first.wait()
        d.start_worker(site, name="w2")
        for request in requests:
            result = result_of(broker_url, request.run_id)
            assert result is not None, f"{request.check_id} never redelivered"
            assert result.outcome is Outcome.SUCCESS and result.worker == "w2@test"
        # The queue is a quorum queue: declared classic, RabbitMQ refuses it.
        with Connection(RABBITMQ_URL) as connection, pytest.raises(Exception, match="x-queue-type"):
            declare_queue(check_queue(site))(connection.channel()).declare()
    finally:
        d.stop_workers()
        delete_rabbitmq_queue(check_queue(site))


def test_a_queue_of_another_kind_stops_the_worker_with_why(
    broker_url: str, deploy: Deploy, plain_server: SmtpServer
) -> None:
    require_rabbitmq()
    site = f"kind{uuid.uuid4().hex[:8]}"
    settings = {
        "broker_url": RABBITMQ_URL, "redis_url": broker_url, "sites": {site: {}},
        "hosts": [{**host("mx1", plain_server, checks={"login": {}}), "site": site}],
    }  # fmt: skip
    with Connection(RABBITMQ_URL) as connection:  # an existing quorum queue
        declare_queue(check_queue(site), "quorum")(connection.channel()).declare()
    try:
        d = deploy(settings)  # broker_queue_type: classic, the default
        worker = d.start_worker(site, name="w1")
        assert worker.wait(timeout=30) == 2
        assert f"RabbitMQ refused the queue {check_queue(site)} as configured" in d.log_text()
        assert "broker_queue_type" in d.log_text() and "Traceback" not in d.log_text()
    finally:
        d.stop_workers()
        delete_rabbitmq_queue(check_queue(site))


def test_worker_refuses_an_unknown_site(deploy: Deploy, plain_server: SmtpServer) -> None:
    d = deploy(
        settings("redis://127.0.0.1:6379/12", [host("mx1", plain_server, checks={"login": {}})]),
    )
    done = subprocess.run(
        [sys.executable, "-m", "smtp_checks.cli.main", "worker", "--config", str(d.path), "--site", "tokyo"],
        capture_output=True, text=True, timeout=60, check=False, env=os.environ,
    )  # fmt: skip
    assert done.returncode == 2
    assert "unknown site 'tokyo' (sites in the config: paris)" in done.stderr


def test_celery_command_line_runs_checks_too(
    broker_url: str, tmp_path: Path, deploy: Deploy, plain_server: SmtpServer
) -> None:
    d = deploy(settings(broker_url, [host("mx1", plain_server, checks={"login": {}})]))
    log = (tmp_path / "celery.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "smtp_checks.workers.celery_compat", "worker", "-Q", "checks.paris",
         "-P", "threads", "-c", "4", "-n", "celery@test", "--without-mingle", "--without-gossip"],
        stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "SMTP_CHECKS_CONFIG": str(d.path), "SMTP_CHECKS_SITE": "paris"},
    )  # fmt: skip
    d.workers.append(process)
    request = d.request("mx1/login")
    publish(d.app(), request)
    (result,) = results(broker_url, 1)
    assert (result.run_id, result.outcome, result.worker) == (
        request.run_id,
        Outcome.SUCCESS,
        "celery@test",
    )
