"""The beat and ad hoc checks on a real Redis (database 14, broker and state), with real
`smtp-checks beat` and `smtp-checks worker` processes where a process boundary matters
(signals, a killed leader, exit codes).

Where a test is about the schedule, a `Taker` stands in for the workers' side of the queue:
it takes each message off the Redis list kombu keeps for `checks.<site>` as it comes and
marks its run taken in the ledger, as a worker does before running it (the beat enqueues a
check again only once its previous run was taken). Without one, what the beat enqueued
stays on the queue, one run per check.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
import yaml

from smtp_checks.scheduler.beat import Beat
from smtp_checks.scheduler.leader import LeaderLock
from smtp_checks.scheduler.schedule import Cadence
from smtp_checks.shared.config import load_config
from smtp_checks.shared.keys import KEYS
from smtp_checks.shared.ledger import Ledger, WorkerLedger
from smtp_checks.shared.messages import CheckRequest
from tests.redis_fixtures import flushed_redis_db
from tests.smtp_servers import SmtpServer, refused_port
from tests.worker_harness import Deployment

SCHEDULER_DB = 14
LOCK_TTL = 2.0


@pytest.fixture
def broker_url() -> Iterator[str]:
    yield from flushed_redis_db(SCHEDULER_DB)


@pytest.fixture
def client(broker_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(broker_url)
    yield connection
    connection.close()


def host(name: str, *, interval: int = 1, site: str = "paris", port: int = 25) -> dict[str, Any]:
    return {
        "name": name,
        "address": "127.0.0.1",
        "port": port,
        "site": site,
        "tls": "none",
        "interval": interval,
        "timeout": 1,
        "checks": {"login": {}},
    }


def write_config(path: Path, broker_url: str, hosts: list[dict[str, Any]]) -> Path:
    settings = {"broker_url": broker_url, "sites": {"paris": {}, "lyon": {}}, "hosts": hosts}
    path.write_text(yaml.safe_dump(settings))
    return path


def queued(
    client: redis.Redis, queue: str = "checks.paris"
) -> list[tuple[CheckRequest, str | None]]:
    """Every request waiting on `queue`, oldest first, with its Celery `expires` header."""
    return [decode(raw) for raw in reversed(client.lrange(queue, 0, -1))]


def decode(raw: bytes) -> tuple[CheckRequest, str | None]:
    """A request as the beat put it on a queue, with its Celery `expires` header."""
    envelope = json.loads(raw)
    args, _kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
    return CheckRequest.model_validate(args[0]), envelope["headers"]["expires"]


class Taker(threading.Thread):
    """The workers' side of the queues, and nothing else: takes every message as it comes
    and marks its run taken in the ledger (shared/ledger.py's WorkerLedger, as a worker)."""

    def __init__(self, url: str, queues: tuple[str, ...] = ("checks.paris", "checks.lyon")):
        super().__init__(daemon=True)
        self.url, self.queues = url, queues
        self.taken: list[tuple[CheckRequest, str | None]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        asyncio.run(self._take())

    async def _take(self) -> None:
        client = redis.asyncio.Redis.from_url(self.url)
        ledger = WorkerLedger(client)
        while not self.stopping.is_set():
            reply = await client.brpop(list(self.queues), timeout=0.1)
            if reply is not None:
                request, expires = decode(reply[1])
                await ledger.take([request], worker="taker")
                self.taken.append((request, expires))
        await client.aclose()

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)


@pytest.fixture
def taker(broker_url: str) -> Iterator[Taker]:
    started = Taker(broker_url)
    started.start()
    yield started
    started.stop()


def slots_by_check(taker: Taker) -> dict[str, list[float]]:
    slots: dict[str, list[float]] = defaultdict(list)
    for request, _ in list(taker.taken):
        slots[request.check_id].append(request.scheduled_for)
    return slots


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class BeatProcess:
    """`smtp-checks beat` as a subprocess, its log in a file."""

    def __init__(self, config: Path, name: str) -> None:
        self.log = config.parent / f"beat-{name}.log"
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "smtp_checks.cli.main", "beat", "--config", str(config),
                 "--lock-ttl", str(LOCK_TTL), "--loglevel", "INFO"],
                stdout=output, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def leads(self) -> bool:
        return "took the leader lock" in self.text()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=10)


@pytest.fixture
def beats() -> Iterator[list[BeatProcess]]:
    started: list[BeatProcess] = []
    yield started
    for beat in started:
        if beat.process.poll() is None:
            beat.process.kill()
            beat.process.wait()


def assert_consecutive(check_id: str, interval: int, times: list[float]) -> None:
    """Each slot of `check_id` once, one interval apart, on the check's own cadence."""
    cadence = Cadence(check_id, interval)
    assert len(set(times)) == len(times), f"{check_id}: a slot was enqueued twice"
    for scheduled in times:
        assert cadence.latest_slot(scheduled).scheduled_for == pytest.approx(scheduled)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(gap == pytest.approx(interval) for gap in gaps), f"{check_id}: gaps {gaps}"


# --- the schedule --------------------------------------------------------------------------


def test_each_host_runs_at_its_interval_with_its_stale_time(
    broker_url: str, client: redis.Redis, tmp_path: Path, taker: Taker
) -> None:
    path = write_config(
        tmp_path / "beat.yaml",
        broker_url,
        [host("a", interval=1), host("b", interval=2), host("c", interval=1, site="lyon")],
    )
    config = load_config(path)
    lock = LeaderLock(client, KEYS.beat_leader, ttl=LOCK_TTL)
    beat = Beat(config, client=client, lock=lock)
    stop = threading.Event()
    thread = threading.Thread(target=beat.run, args=(stop,))
    started = time.time()
    thread.start()
    time.sleep(6.0)
    stop.set()
    thread.join(timeout=5)
    stopped = time.time()

    wait_for(lambda: not queued(client) and not queued(client, "checks.lyon"), 5, "a taker")
    taker.stop()
    runs = taker.taken
    slots = slots_by_check(taker)
    for request, expires in runs:
        assert request.stale_at == pytest.approx(
            request.scheduled_for + (2 if request.host == "b" else 1)
        )
        # No expiry: a run late in its queue still runs (only a newer run supersedes it).
        assert expires is None
        assert not request.adhoc
    for check_id, interval in (("a/login", 1), ("b/login", 2), ("c/login", 1)):
        times = slots[check_id]
        assert_consecutive(check_id, interval, times)
        # The latest slot at start (owed), then every slot up to the stop: within one.
        cadence = Cadence(check_id, interval)
        expected = cadence.latest_slot(stopped).index - cadence.latest_slot(started).index + 1
        assert abs(len(times) - expected) <= 1, (check_id, len(times), expected)
        assert times[0] == pytest.approx(cadence.latest_slot(started).scheduled_for)
    assert {r.site for r, _ in runs if r.host == "c"} == {"lyon"}
    # Every run is expected by the consumer, none is pending (all were taken), and the lock
    # was released on the way out.
    assert Ledger(client).count() == len(runs)
    assert Ledger(client).pending_count() == 0
    assert client.get(KEYS.beat_leader) is None


def test_a_restarted_beat_owes_one_run_per_check_not_the_backlog(
    broker_url: str, client: redis.Redis, tmp_path: Path
) -> None:
    path = write_config(tmp_path / "beat.yaml", broker_url, [host("a", interval=1)])
    config = load_config(path)
    # The beat was "down" for a long time: nothing for this check was ever claimed.
    beat = Beat(config, client=client, lock=LeaderLock(client, KEYS.beat_leader, ttl=LOCK_TTL))
    stop = threading.Event()
    thread = threading.Thread(target=beat.run, args=(stop,))
    thread.start()
    wait_for(lambda: len(queued(client)) >= 1, 5, "the first run")
    stop.set()
    thread.join(timeout=5)
    # A second beat started right away enqueues nothing the first already did.
    again = Beat(config, client=client, lock=LeaderLock(client, KEYS.beat_leader, ttl=LOCK_TTL))
    stop = threading.Event()
    thread = threading.Thread(target=again.run, args=(stop,))
    thread.start()
    time.sleep(0.3)
    stop.set()
    thread.join(timeout=5)
    # Its run still queued, the check is not enqueued again: one run, and its slot skipped.
    assert len(queued(client)) == 1
    assert int(client.hget(KEYS.counters, "skipped_slots") or 0) >= 1


# --- high availability ---------------------------------------------------------------------


def test_two_beats_enqueue_each_slot_once_and_a_killed_leader_hands_over(
    broker_url: str, client: redis.Redis, tmp_path: Path, beats: list[BeatProcess], taker: Taker
) -> None:
    path = write_config(
        tmp_path / "beat.yaml", broker_url, [host(f"h{n}", interval=1) for n in range(4)]
    )
    beats.extend([BeatProcess(path, "one"), BeatProcess(path, "two")])
    wait_for(lambda: any(b.leads() for b in beats), 15, "a leader")
    time.sleep(3.0)
    (leader,) = [b for b in beats if b.leads()]
    (follower,) = [b for b in beats if b is not leader]
    old_token = client.get(KEYS.beat_leader)
    leader.process.send_signal(signal.SIGKILL)
    leader.process.wait()
    killed = time.time()
    wait_for(lambda: client.get(KEYS.beat_leader) not in (None, old_token), 10, "a new leader")
    takeover = time.time() - killed
    time.sleep(2.5)
    assert follower.stop() == 0

    assert takeover <= LOCK_TTL + LOCK_TTL / 3 + 0.5
    assert follower.leads()
    slots = slots_by_check(taker)
    assert set(slots) == {f"h{n}/login" for n in range(4)}
    for check_id, times in slots.items():
        assert len(set(times)) == len(times), f"{check_id}: a slot was enqueued twice"
        # Runs resumed after the handover; the slots missed meanwhile are not made up.
        assert max(times) >= killed + takeover - 1.0
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert max(gaps) <= LOCK_TTL + LOCK_TTL / 3 + 1.5


# --- reload --------------------------------------------------------------------------------


def test_sighup_applies_a_new_config_and_refuses_an_invalid_one(
    broker_url: str, client: redis.Redis, tmp_path: Path, beats: list[BeatProcess], taker: Taker
) -> None:
    path = write_config(tmp_path / "beat.yaml", broker_url, [host("a"), host("b")])
    beat = BeatProcess(path, "one")
    beats.append(beat)
    wait_for(lambda: {"a/login", "b/login"} <= set(slots_by_check(taker)), 15, "both hosts")

    write_config(path, broker_url, [host("a"), host("c", interval=2)])
    beat.process.send_signal(signal.SIGHUP)
    wait_for(lambda: "config reloaded" in beat.text(), 5, "the reload")
    reloaded = time.time()
    time.sleep(2.5)

    bad = {"broker_url": broker_url, "sites": {"paris": {}}, "hosts": [host("a"), host("x")]}
    bad["hosts"][1]["site"] = "nowhere"
    bad["hosts"][0]["interval"] = "often"
    path.write_text(yaml.safe_dump(bad))
    beat.process.send_signal(signal.SIGHUP)
    wait_for(lambda: "previous schedule stays in force" in beat.text(), 5, "the refusal")
    refused = time.time()
    time.sleep(2.5)
    # A new broker whose sentinels' password is not on this machine: refused, not a crash.
    behind = {
        "broker_url": "sentinel://127.0.0.1:1/0", "sentinel_master": "m",
        "sentinel_password": "env:SMTP_CHECKS_TEST_ABSENT", "sites": {"paris": {}},
        "hosts": [host("a")],
    }  # fmt: skip
    path.write_text(yaml.safe_dump(behind))
    beat.process.send_signal(signal.SIGHUP)
    wait_for(lambda: "env:SMTP_CHECKS_TEST_ABSENT not found" in beat.text(), 5, "the refusal")
    assert beat.process.poll() is None
    assert beat.stop() == 0

    slots = slots_by_check(taker)
    log = beat.text()
    # Every problem of the refused file is in the log, and the old schedule went on.
    assert "hosts[1].site" in log and "nowhere" in log
    assert "hosts[0].interval" in log
    assert max(slots["a/login"]) > refused + 1.0
    assert max(slots["c/login"]) > refused
    assert "x/login" not in slots
    # b stopped at the good reload; c started then, at its own cadence.
    assert max(slots["b/login"]) <= reloaded
    assert min(slots["c/login"]) >= reloaded - 2.0
    assert_consecutive("a/login", 1, slots["a/login"])
    assert_consecutive("c/login", 2, slots["c/login"])


def test_beat_without_a_broker_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "beat.yaml"
    path.write_text(yaml.safe_dump({"sites": {"paris": {}}, "hosts": [host("a")]}))
    done = subprocess.run(
        [sys.executable, "-m", "smtp_checks.cli.main", "beat", "--config", str(path)],
        check=False, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2
    assert "broker_url is not set" in done.stderr


# --- ad hoc --------------------------------------------------------------------------------


def enqueue(path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smtp_checks.cli.main", "enqueue", "--config", str(path), *args],
        check=False, capture_output=True, text=True, timeout=timeout, env=dict(os.environ),
    )  # fmt: skip


def test_enqueue_without_wait_prints_the_run_and_records_it(
    broker_url: str, client: redis.Redis, tmp_path: Path
) -> None:
    path = write_config(tmp_path / "c.yaml", broker_url, [host("mx1", interval=60)])
    done = enqueue(path, "--host", "mx1", "--check", "login")
    assert done.returncode == 0, done.stderr
    ((request, _),) = queued(client)
    assert done.stdout == f"{request.run_id}\n"
    assert request.adhoc and request.check_id == "mx1/login"
    # Not dropped as stale before a worker can take it: a whole interval to go.
    assert request.stale_at - request.scheduled_for == pytest.approx(60)
    assert Ledger(client).count() == 1


def test_enqueue_refuses_an_unknown_host_or_check(broker_url: str, tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.yaml", broker_url, [host("mx1", interval=60)])
    unknown_host = enqueue(path, "--host", "mx9", "--check", "login")
    assert unknown_host.returncode == 2
    assert "unknown host 'mx9' (hosts in the config: mx1)" in unknown_host.stderr
    unknown_check = enqueue(path, "--host", "mx1", "--check", "message")
    assert unknown_check.returncode == 2
    assert "host 'mx1' has no message check (configured: login)" in unknown_check.stderr


def test_enqueue_wait_prints_the_result_and_exits_with_its_code(
    broker_url: str, tmp_path: Path, plain_server: SmtpServer
) -> None:
    hosts = [
        host("up", interval=60, port=plain_server.port),
        host("down", interval=60, port=refused_port()),
    ]
    d = Deployment.write(
        tmp_path, {"broker_url": broker_url, "sites": {"paris": {}}, "hosts": hosts}
    )
    d.start_worker("paris", name="w1")
    try:
        ok = enqueue(d.path, "--host", "up", "--check", "login", "--wait", "6")
        critical = enqueue(d.path, "--host", "down", "--check", "login", "--wait", "6")
    finally:
        d.stop_workers()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("OK: Response time ") and "'time'=" in ok.stdout
    assert critical.returncode == 2, critical.stdout + critical.stderr
    assert critical.stdout == "CRITICAL: Unable to connect to SMTP: Connection refused \n"


def test_enqueue_wait_without_a_worker_says_which_queue_and_exits_3(
    broker_url: str, tmp_path: Path, plain_server: SmtpServer
) -> None:
    hosts = [host("up", interval=60, port=plain_server.port), host("far", site="lyon")]
    d = Deployment.write(
        tmp_path, {"broker_url": broker_url, "sites": {"paris": {}, "lyon": {}}, "hosts": hosts}
    )
    d.start_worker("paris", name="w1")  # a live worker, but for another site
    try:
        started = time.monotonic()
        lost = enqueue(d.path, "--host", "far", "--check", "login", "--wait", "1")
        waited = time.monotonic() - started
    finally:
        d.stop_workers()
    assert lost.returncode == 3
    assert lost.stdout.startswith(
        "UNKNOWN: no result within 1 s from a worker on checks.lyon (run "
    )
    assert waited < 10
    assert plain_server.session_count == 0
