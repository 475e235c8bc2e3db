"""The pipeline's health as `smtp-checks status` judges it, from what the roles leave in a
real Redis (database 7): heartbeats, the check queues, the outboxes, the recent orphans."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from smtp_checks.shared.config import Config, load_config
from smtp_checks.shared.heartbeats import Heartbeat, send_heartbeat
from smtp_checks.shared.keys import KEYS
from smtp_checks.shared.output.status import Status
from smtp_checks.shared.pipeline_health import PipelineHealth, SiteHealth, read_health
from tests.redis_fixtures import flushed_redis_db

NOW = time.time()


@pytest.fixture
def url() -> Iterator[str]:
    yield from flushed_redis_db(7)


@pytest.fixture
def client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


@pytest.fixture
def config(tmp_path: Path, url: str) -> Config:
    """60 checks a minute on paris (60 hosts every 60 s), none on lyon."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "broker_url": url,
        "sites": {"paris": {}, "lyon": {}},
        "hosts": [
            {"name": f"mx{i}", "address": "192.0.2.1", "site": "paris", "checks": {"login": {}}}
            for i in range(60)
        ],
        "centreon": {"resend_interval": 300},
    }))  # fmt: skip
    return load_config(path)


def beat(client: redis.Redis, role: str, name: str, *, age: float = 1.0, **figures: Any) -> None:
    site = figures.pop("site", None)
    started = figures.pop("started_ago", 600.0)
    send_heartbeat(
        client, Heartbeat(role, name, NOW - age, NOW - started, site=site, figures=figures)
    )


def healthy(client: redis.Redis) -> None:
    """A leading beat, a consumer and one paris worker that keeps up."""
    beat(client, "beat", "b1", leading=1, last_enqueue_at=NOW - 0.5)
    beat(client, "consumer", "c1")
    beat(client, "worker", "w1", site="paris", checks_per_minute=60, queue_empty_at=NOW - 1)


def health(config: Config, client: redis.Redis) -> PipelineHealth:
    return read_health(config, client, client, NOW)


def site(found: PipelineHealth, name: str) -> SiteHealth:
    return next(each for each in found.sites if each.site == name)


def test_a_pipeline_that_keeps_up_is_ok(config: Config, client: redis.Redis) -> None:
    healthy(client)
    found = health(config, client)
    assert (found.status, found.problems) == (Status.OK, [])
    assert found.beat_leader == "b1" and found.consumers == ["c1"]
    paris = site(found, "paris")
    assert (paris.site, paris.workers, paris.queued, paris.asked_per_minute) == (
        "paris",
        ["w1"],
        0,
        60.0,
    )


@pytest.mark.parametrize(
    ("rate", "status"),
    [(55, Status.OK), (53, Status.WARNING), (31, Status.WARNING), (29, Status.CRITICAL)],
)
def test_a_site_behind_is_judged_by_the_share_of_checks_it_runs(
    config: Config, client: redis.Redis, rate: int, status: Status
) -> None:
    healthy(client)
    # Its queue not seen empty for two minutes: behind, so its rate counts.
    beat(client, "worker", "w1", site="paris", checks_per_minute=rate, queue_empty_at=NOW - 120)
    found = health(config, client)
    assert found.status is status
    if status is not Status.OK:
        assert found.problems == [
            f"site paris runs {rate} of the 60 checks per minute its config asks for "
            f"({rate / 60:.0%})"
        ]


def test_a_site_that_empties_its_queue_is_not_judged_by_a_minutes_count(
    config: Config, client: redis.Redis
) -> None:
    healthy(client)
    beat(client, "worker", "w1", site="paris", checks_per_minute=10, queue_empty_at=NOW - 5)
    assert health(config, client).status is Status.OK
    # Nor is a worker up for less than a minute: its count does not cover one.
    beat(client, "worker", "w1", site="paris", checks_per_minute=10, started_ago=20)
    assert health(config, client).status is Status.OK


def test_a_site_with_checks_and_no_live_worker_is_critical_and_named(
    config: Config, client: redis.Redis
) -> None:
    healthy(client)
    beat(client, "worker", "w1", site="paris", age=30)  # dead: no heartbeat for 30 s
    found = health(config, client)
    assert found.status is Status.CRITICAL
    assert found.problems == ["site paris has 60 check(s) and no live worker"]
    assert site(found, "paris").workers_gone == ["w1"]
    # lyon has no checks: no worker is no problem there.
    assert site(found, "lyon").status is Status.OK


def test_a_site_that_lost_one_of_its_workers_is_a_warning(
    config: Config, client: redis.Redis
) -> None:
    healthy(client)
    beat(client, "worker", "w2", site="paris", age=30)
    found = health(config, client)
    assert (found.status, found.problems) == (
        Status.WARNING,
        ["site paris lost 1 worker(s): w2"],
    )


def test_no_leading_beat_and_no_consumer_are_critical(config: Config, client: redis.Redis) -> None:
    beat(client, "worker", "w1", site="paris", checks_per_minute=60, queue_empty_at=NOW)
    beat(client, "beat", "b1", leading=0)
    found = health(config, client)
    assert found.status is Status.CRITICAL
    assert found.problems == [
        "no beat is leading: nothing is scheduled",
        "no live consumer: nothing reaches Centreon",
    ]


@pytest.mark.parametrize(
    ("age", "status"), [(100, Status.OK), (400, Status.WARNING), (1000, Status.CRITICAL)]
)
def test_an_outbox_is_judged_by_the_age_of_its_oldest_result(
    config: Config, client: redis.Redis, age: float, status: Status
) -> None:
    healthy(client)
    client.hset(KEYS.outboxes, "api_v2:centreon", json.dumps({"error": "HTTP 503\n| x"}))
    client.rpush(KEYS.outbox("api_v2:centreon"), json.dumps({"check_time": NOW - age}))
    found = health(config, client)
    (box,) = found.outboxes
    assert (box.forwarder, box.waiting, round(box.oldest_for or 0)) == ("api_v2:centreon", 1, age)
    assert box.status is status and found.status is status
    assert box.error == "HTTP 503 / x"  # Centreon's text, one harmless line


def test_queued_runs_and_recent_orphans_are_counted(config: Config, client: redis.Redis) -> None:
    healthy(client)
    body = json.dumps([[{"identity": {"scheduled_for": NOW - 42}}], {}, {}]).encode()
    message = json.dumps({"body": base64.b64encode(body).decode()})
    client.lpush("checks.paris", message, message)
    client.zadd(KEYS.orphans_recent, {"old": NOW - 4000, "r1": NOW - 60, "r2": NOW - 10})
    found = health(config, client)
    paris = site(found, "paris")
    assert (paris.queued, round(paris.oldest_queued_for or 0)) == (2, 42)
    assert found.orphans_last_hour == 2


def test_where_no_worker_can_see_its_queue_empty_a_site_is_judged_by_its_depth(
    config: Config, client: redis.Redis
) -> None:
    healthy(client)
    # RabbitMQ workers report the depth they see, never an empty queue: 10 of 60 a minute
    # with nothing waiting is a site that keeps up (its checks come every few minutes).
    beat(client, "worker", "w1", site="paris", checks_per_minute=10, queue_depth=0)
    assert read_health(config, client, None, NOW).status is Status.OK
    beat(client, "worker", "w1", site="paris", checks_per_minute=10, queue_depth=400)
    found = read_health(config, client, None, NOW)
    assert found.status is Status.CRITICAL and site(found, "paris").queued == 400


def test_status_without_a_readable_config_or_redis_is_unknown_on_its_output_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from smtp_checks.cli.status import run_status

    broken = tmp_path / "broken.yaml"
    broken.write_text("sites: {paris: {}}\nhosts: [{name: mx1}]\n")
    assert run_status(["--config", str(broken)]) == 3
    assert capsys.readouterr().out.startswith("UNKNOWN: ")
    unreachable = tmp_path / "unreachable.yaml"
    unreachable.write_text(yaml.safe_dump({
        "broker_url": "redis://127.0.0.1:1/0", "sites": {"paris": {}},
        "hosts": [{"name": "mx1", "address": "192.0.2.1", "site": "paris", "checks": {"login": {}}}],
    }))  # fmt: skip
    assert run_status(["--config", str(unreachable)]) == 3
    assert capsys.readouterr().out.startswith("UNKNOWN: cannot read the pipeline's state in Redis")
