"""Security over a whole run: no secret anywhere, pickle refused, a hostile server cannot
inject into the command file, and Redis behind a password."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from smtp_checks.shared.celery_app import CHECK_TASK, check_queue, make_app
from smtp_checks.shared.config import ScheduledCheck
from smtp_checks.shared.messages import CheckRequest
from tests.e2e.pipeline import Pipeline, host, wait_until
from tests.smtp_servers import (
    INJECTION_PAYLOAD,
    TEST_PASSWORD,
    TEST_USER,
    ServerPool,
    refused_port,
)

SECRET_REF = "env:SMTP_E2E_PASSWORD"


def checked(pipeline: Pipeline, *services: tuple[str, str]) -> Callable[[], bool]:
    return lambda: all(
        pipeline.nagios.services().get(service, {}).get("has_been_checked") == "1"
        for service in services
    )


def everything_written(pipeline: Pipeline) -> bytes:
    """Every byte the run left behind: Redis's files, every log, Nagios's files."""
    blobs = [
        path.read_bytes()
        for path in pipeline.directory.rglob("*")
        if path.is_file() and not path.is_fifo()
    ]
    blobs += [
        path.read_bytes()
        for path in Path(pipeline.nagios.directory).rglob("*")
        if path.is_file() and not path.is_fifo()
    ]
    return b"\n".join(blobs)


def test_no_secret_in_redis_messages_logs_or_centreon(
    pipelines: Callable[..., Pipeline], server_pool: ServerPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_E2E_PASSWORD", TEST_PASSWORD)  # the workers' environment
    server = server_pool.smtp(username=TEST_USER, password=TEST_PASSWORD, auth_require_tls=False)
    secret = {"username": TEST_USER, "password": SECRET_REF}
    pipeline = pipelines([
        host("p-auth", "paris", server.port, {"login": {}}, **secret),
        host("l-auth", "lyon", server.port, {"login": {}}, **secret),
    ]).start()  # fmt: skip
    wait_until(
        checked(pipeline, ("p-auth", "SMTP-Login"), ("l-auth", "SMTP-Login")), 30, "both checked"
    )
    states = pipeline.nagios.services()
    assert states[("p-auth", "SMTP-Login")]["current_state"] == "0"
    assert all(attempt.success for attempt in server.auth_attempts)
    pipeline.close()  # every role flushed its logs, Redis wrote its append-only file
    written = everything_written(pipeline)
    assert SECRET_REF.encode() in written  # the reference travelled in the requests...
    assert TEST_PASSWORD.encode() not in written  # ...the password never did


def test_a_pickle_message_on_a_check_queue_is_refused(
    pipelines: Callable[..., Pipeline], server_pool: ServerPool
) -> None:
    server = server_pool.smtp()
    pipeline = pipelines([host("p-ok", "paris", server.port, {"login": {}})]).start(
        roles=["paris-1", "lyon-1"]
    )
    app = make_app(pipeline.redis.url, pipeline.config.sites)
    check: ScheduledCheck = pipeline.config.scheduled_checks()[0]
    poisoned = CheckRequest.from_scheduled(check, scheduled_for=0, stale_at=4e9)
    app.send_task(CHECK_TASK, args=[poisoned.model_dump(mode="json")], queue=check_queue("paris"),
                  serializer="pickle")  # fmt: skip
    wait_until(lambda: "refused a message" in pipeline.log("paris-1"), 20, "the refusal logged")
    assert "pickle" in pipeline.log("paris-1")
    assert server.session_count == 0  # never run
    assert pipeline.alive()["paris-1"]


def test_a_hostile_server_cannot_inject_into_the_command_file(
    pipelines: Callable[..., Pipeline], raw_server_factory: Callable[..., object]
) -> None:
    hostile = raw_server_factory("injection_refusal")
    # The forged command names this service: a real one, whose real state is CRITICAL.
    victim_host, victim_service = INJECTION_PAYLOAD.split(";")[1:3]
    pipeline = pipelines([
        host("p-hostile", "paris", hostile.port, {"login": {}}),  # type: ignore[attr-defined]
        host(victim_host, "lyon", refused_port(), {"login": {"service": victim_service}}),
    ]).start()  # fmt: skip
    services = [("p-hostile", "SMTP-Login"), (victim_host, victim_service)]
    wait_until(checked(pipeline, *services), 30, "both checked")
    states = pipeline.nagios.services()
    hostile_state, victim = states[services[0]], states[services[1]]
    assert hostile_state["current_state"] == "2"
    assert hostile_state["plugin_output"].startswith(
        "CRITICAL: Unable to connect to SMTP: session refused: 554 "
    )
    assert "PROCESS_SERVICE_CHECK_RESULT" in hostile_state["plugin_output"]  # shown, as text
    assert hostile_state["performance_data"] == ""  # no perfdata smuggled in either
    assert victim["current_state"] == "2" and "owned" not in victim["plugin_output"]
    # Nagios read only the commands the consumer wrote: none for a service it did not
    # write about, and never the forged OK.
    commands = [text.split(";", 3) for _, text in pipeline.nagios.commands()]
    assert commands and {(name, service) for name, service, _, _ in commands} <= set(services)
    assert not any(code == "0" for name, _, code, _ in commands if name == victim_host)


@pytest.mark.parametrize("tls", [False, True], ids=["redis", "rediss"])
def test_redis_with_a_password_works_end_to_end(
    pipelines: Callable[..., Pipeline], server_pool: ServerPool, tls: bool
) -> None:
    server = server_pool.smtp()
    pipeline = pipelines(
        [host("p-ok", "paris", server.port, {"login": {}}), host("l-ok", "lyon", server.port, {"login": {}})],
        redis_password="redis-Secr3t", redis_tls=tls,
    ).start()  # fmt: skip
    assert pipeline.redis.url.startswith("rediss://" if tls else "redis://")
    wait_until(
        checked(pipeline, ("p-ok", "SMTP-Login"), ("l-ok", "SMTP-Login")), 30, "both checked"
    )
    assert pipeline.nagios.services()[("p-ok", "SMTP-Login")]["current_state"] == "0"
    assert all(pipeline.alive().values())
    for name in pipeline.roles:
        assert "redis-Secr3t" not in pipeline.log(name)  # the broker URL is logged masked
