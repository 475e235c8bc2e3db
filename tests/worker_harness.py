"""Run real `smtp-checks worker` processes against a real broker, and talk to their queues.

Tests write a config for their own servers, start workers as subprocesses (their logs go to
a file the test can scan), publish CheckRequests as the beat would, and read what comes out
of the `results` and `dead_letters` queues.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from celery import Celery
from kombu import Connection

from smtp_checks.shared.celery_app import (
    CHECK_TASK,
    check_queue,
    config_app,
    declare_queue,
)
from smtp_checks.shared.config import Config, ScheduledCheck, load_config, parse_config
from smtp_checks.shared.keys import KEYS
from smtp_checks.shared.messages import CheckRequest, CheckResult
from smtp_checks.shared.result_queue import ResultQueue
from smtp_checks.workers.runner import Accepted, CheckRunner

RABBITMQ_URL = os.environ.get("SMTP_CHECKS_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672//")


def require_rabbitmq() -> None:
    """Skip when RabbitMQ is not reachable; fail loudly under CI=true."""
    try:
        with Connection(RABBITMQ_URL, connect_timeout=2) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as error:
        message = f"RabbitMQ unreachable at {RABBITMQ_URL}: {error}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: broker tests must run, not be skipped)")
        pytest.skip(message)


@dataclass
class Deployment:
    """A config file on disk and what it describes."""

    path: Path
    config: Config
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    @classmethod
    def write(cls, directory: Path, settings: dict[str, Any]) -> Deployment:
        path = directory / "smtp-checks.yaml"
        path.write_text(yaml.safe_dump(settings))
        return cls(path, load_config(path))

    def app(self) -> Celery:
        assert self.config.broker_url is not None
        return config_app(self.config)

    def check(self, check_id: str) -> ScheduledCheck:
        return next(c for c in self.config.scheduled_checks() if c.check_id == check_id)

    def request(self, check_id: str, *, stale_in: float = 120.0, late: float = 0.0) -> CheckRequest:
        """A request as the beat makes it, scheduled `late` seconds ago."""
        now = time.time()
        return CheckRequest.from_scheduled(
            self.check(check_id), scheduled_for=now - late, stale_at=now - late + stale_in
        )

    def start_worker(
        self, site: str, *, name: str, concurrency: int = 50, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = self.path.parent / f"worker-{name}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [
                    sys.executable, "-m", "smtp_checks.cli.main", "worker", "--config", str(self.path),
                    "--site", site, "--concurrency", str(concurrency), "--hostname",
                    f"{name}@test", "--loglevel", "INFO",
                ],
                stdout=output, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
            )  # fmt: skip
        self.workers.append(process)
        self.logs.append(log)
        return process

    def stop_workers(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.workers:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def log_text(self) -> str:
        return "".join(log.read_text(errors="replace") for log in self.logs if log.exists())


def publish(app: Celery, request: CheckRequest, **options: Any) -> None:
    app.send_task(
        CHECK_TASK,
        args=[request.model_dump(mode="json")],
        queue=check_queue(request.site),
        **options,
    )


def drain(broker_url: str, queue_name: str, count: int, timeout: float) -> list[Any]:
    """Take up to `count` message payloads from `queue_name` within `timeout` seconds."""
    payloads: list[Any] = []
    deadline = time.monotonic() + timeout
    with Connection(broker_url) as connection:
        simple = connection.SimpleQueue(declare_queue(queue_name))
        try:
            while len(payloads) < count and time.monotonic() < deadline:
                try:
                    message = simple.get(timeout=min(1.0, max(0.05, deadline - time.monotonic())))
                except queue.Empty:
                    continue
                payloads.append(message.payload)
                message.ack()
        finally:
            simple.close()
    return payloads


def results(redis_url: str, count: int, timeout: float = 30.0) -> list[CheckResult]:
    """Up to `count` CheckResults taken from the result queue (in the Redis at `redis_url`)
    within `timeout` seconds."""
    client = redis.Redis.from_url(redis_url)
    queue_key = ResultQueue(client).key
    taken: list[CheckResult] = []
    deadline = time.monotonic() + timeout
    while len(taken) < count and time.monotonic() < deadline:
        raw = client.lpop(queue_key, count - len(taken))
        if not raw:
            time.sleep(0.05)
            continue
        taken.extend(CheckResult.model_validate_json(item) for item in raw)
    return taken


def result_of(redis_url: str, run_id: str, timeout: float = 30.0) -> CheckResult | None:
    """The result of one run, leaving any other result on the queue untouched."""
    client = redis.Redis.from_url(redis_url)
    queue_key = ResultQueue(client).key
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for raw in client.lrange(queue_key, 0, -1):
            result = CheckResult.model_validate_json(raw)
            if result.run_id == run_id:
                client.lrem(queue_key, 1, raw)
                return result
        time.sleep(0.05)
    return None


def dead_letters(redis_url: str, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    """Up to `count` dead letters (the newest first) from the list workers keep them in."""
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while True:
        letters = [json.loads(raw) for raw in client.lrange(KEYS.dead_letters, 0, count - 1)]
        if len(letters) >= count or time.monotonic() > deadline:
            return letters
        time.sleep(0.05)


@contextmanager
def running(deployment: Deployment) -> Iterator[Deployment]:
    try:
        yield deployment
    finally:
        deployment.stop_workers()


def run_in_worker(settings: dict[str, Any]) -> CheckResult:
    """The one check of `settings` (a config) through a worker's own runner, in process: a
    request as the beat makes it, as JSON as the queue carries it, without per-target
    limits (no Redis)."""
    [scheduled] = parse_config(settings).scheduled_checks()
    now = time.time()
    request = CheckRequest.from_scheduled(scheduled, scheduled_for=now, stale_at=now + 60)
    runner = CheckRunner(limiter=None)
    accepted = runner.accept(json.loads(request.model_dump_json()), worker="test-worker")
    assert isinstance(accepted, Accepted), accepted
    return asyncio.run(runner.run(accepted))
