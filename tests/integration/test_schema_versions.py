"""Schema version 2, and version 1 still read for one release, in both directions: a worker of
this release runs the requests the previous release's beat sends, and a consumer of this
release records the results the previous release's workers send. The version 1 messages are
the bytes the previous release wrote (tests/fixtures/v1_*.json)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from smtp_checks.consumer.outbox import Outbox
from smtp_checks.consumer.processor import ResultProcessor
from smtp_checks.consumer.service_states import ServiceStates
from smtp_checks.shared.celery_app import CHECK_TASK, check_queue
from smtp_checks.shared.ledger import Ledger
from smtp_checks.shared.messages import CheckRequest, CheckResult, Outcome
from tests.redis_fixtures import flushed_redis_db
from tests.smtp_servers import SmtpServer
from tests.worker_harness import Deployment, result_of

FIXTURES = Path(__file__).parents[1] / "fixtures"


def version_1(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"v1_{name}.json").read_text())
    assert data["schema_version"] == 1
    return data


@pytest.fixture
def state_url() -> Iterator[str]:
    yield from flushed_redis_db(12)


@pytest.mark.parametrize("name", ["request_login", "request_message"])
def test_a_version_1_request_reads_as_version_2_with_the_same_identity(name: str) -> None:
    old = version_1(name)
    request = CheckRequest.model_validate(old)
    assert request.schema_version == 2
    for field in ("check_id", "run_id", "host", "service", "site", "scheduled_for", "stale_at"):
        assert getattr(request.identity, field) == old[field]
    assert request.identity.mode.value == old["mode"]
    assert request.password_ref == old["password_ref"]
    again = CheckRequest.model_validate_json(request.model_dump_json())
    assert again == request  # and version 2 round-trips


@pytest.mark.parametrize("name", ["result_success", "result_rejected", "result_stale"])
def test_a_version_1_result_reads_as_version_2(name: str) -> None:
    old = version_1(name)
    result = CheckResult.model_validate(old)
    assert (result.run_id, result.host, result.worker, result.outcome.value) == (
        old["run_id"],
        old["host"],
        old["worker"],
        old["outcome"],
    )
    assert CheckResult.model_validate_json(result.model_dump_json()) == result


def test_a_worker_runs_a_request_the_previous_beat_sent(
    state_url: str, tmp_path: Path, plain_server: SmtpServer
) -> None:
    deployment = Deployment.write(
        tmp_path,
        {
            "broker_url": state_url,
            "sites": {"paris": {}},
            "hosts": [
                {"name": "mx1", "address": "127.0.0.1", "site": "paris", "checks": {"login": {}}}
            ],
        },
    )
    old = version_1("request_login")
    now = time.time()
    old["target"].update(port=plain_server.port, tls="none")
    old.update(username=None, password_ref=None, scheduled_for=now, stale_at=now + 60)
    deployment.start_worker("paris", name="w1")
    try:
        # As the previous beat published it: a Celery task message whose argument is v1.
        deployment.app().send_task(CHECK_TASK, args=[old], queue=check_queue("paris"))
        result = result_of(state_url, old["run_id"])
    finally:
        deployment.stop_workers()
    assert result is not None and result.outcome is Outcome.SUCCESS
    assert result.schema_version == 2 and result.identity.check_id == "mx1/login"


def test_a_consumer_records_a_result_previous_workers_sent(state_url: str, tmp_path: Path) -> None:
    from smtp_checks.shared.config import parse_config

    config = parse_config(
        {
            "sites": {"paris": {}},
            "hosts": [
                {"name": "mx1", "address": "127.0.0.1", "site": "paris", "checks": {"login": {}}}
            ],
        }
    )
    client = redis.Redis.from_url(state_url)
    outbox = Outbox(client, "test", max_length=100)
    processor = ResultProcessor(
        config, ServiceStates(client, [outbox.key], resend_interval=300), Ledger(client)
    )
    old = version_1("result_rejected")
    processor.handle([json.dumps(old).encode()])
    (forwarded,) = outbox.take(10).results
    assert (forwarded.host, forwarded.service, forwarded.status) == ("mx1", "SMTP-Login", 2)
    assert forwarded.output.startswith("CRITICAL: Unable to connect to SMTP: session refused: 554")
    assert processor.counts["invalid"] == 0
