"""A worker's last results, published again when the Redis it talks to is not the one that
took them (workers/recent_results.py): a real redis-server restarted without its data has
a new replication id, as a promoted replica has (tests/e2e/test_failover.py shows that)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis

from smtp_checks.shared.config import parse_config
from smtp_checks.shared.keys import KEYS
from smtp_checks.shared.messages import CheckRequest, CheckResult, Handling
from smtp_checks.shared.probe.result import ProbeResult
from smtp_checks.shared.redis_client import connect_async
from smtp_checks.workers.publisher import ResultPublisher
from smtp_checks.workers.recent_results import KEEP_FOR, RecentResults
from tests.e2e.pipeline import RedisServer

pytestmark = pytest.mark.integration

CONFIG = parse_config(
    {
        "sites": {"paris": {}},
        "hosts": [
            {"name": "mx1", "address": "192.0.2.1", "site": "paris", "checks": {"login": {}}}
        ],
    }
)


def result(at: float) -> CheckResult:
    (check,) = CONFIG.scheduled_checks()
    request = CheckRequest.from_scheduled(check, scheduled_for=at - 1, stale_at=at + 59)
    handling = Handling(worker="w1@test", received_at=at - 1, queue_wait=0.0)
    return CheckResult.from_probe(request, handling, ProbeResult(time=0.1), at - 0.1)


def test_results_are_published_again_to_a_redis_that_lost_them(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    sent = [result(1_800_000_000.0 + n) for n in range(3)]

    async def scenario() -> tuple[int, int]:
        publisher = ResultPublisher(connect_async(server.url), checks=1)
        await publisher.publish(sent)
        first = await publisher.publish_again_if_forgotten()  # the first look: nothing lost
        server.stop()
        for path in (tmp_path / "redis").glob("**/*.aof*"):
            path.unlink()  # it comes back without its last writes
        server.start()
        while True:  # the worker's own backoff, in short
            try:
                return first, await publisher.publish_again_if_forgotten()
            except redis.ConnectionError:
                await asyncio.sleep(0.05)

    try:
        assert asyncio.run(scenario()) == (0, 3)
        client = redis.Redis.from_url(server.url)
        again = [CheckResult.model_validate_json(raw) for raw in client.lrange(KEYS.results, 0, -1)]
        assert [r.run_id for r in again] == [r.run_id for r in sent]
        client.close()
    finally:
        server.stop()


def test_forgotten_results_stay_forgotten_until_they_are_out_again(tmp_path: Path) -> None:
    """A publication that fails right after the failover (Redis still settling) loses
    nothing: the results come back at the next look, until `published_again`."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    sent = [result(1_800_000_000.0)]

    async def scenario() -> list[int]:
        recent = RecentResults(connect_async(server.url))
        recent.published(sent, at=1000.0)
        seen = [len((await recent.forgotten())[0])]  # the first look
        server.stop()
        server.start()  # a new replication id (data or not)
        while True:
            try:
                results, replication_id = await recent.forgotten()
                break
            except redis.ConnectionError:
                await asyncio.sleep(0.05)
        seen.append(len(results))
        seen.append(len((await recent.forgotten())[0]))  # that publication failed: again
        assert replication_id is not None
        recent.published_again(replication_id)
        seen.append(len((await recent.forgotten())[0]))
        return seen

    try:
        assert asyncio.run(scenario()) == [0, 1, 1, 0]
    finally:
        server.stop()


def test_only_the_last_seconds_of_publishing_are_kept() -> None:
    recent = RecentResults(None)  # type: ignore[arg-type]  # no Redis needed to keep
    old, new = result(1_800_000_000.0), result(1_800_000_100.0)
    recent.published([old], at=1000.0)
    recent.published([new], at=1000.0 + KEEP_FOR + 1)
    assert [r.run_id for _, r in recent._kept] == [new.run_id]
