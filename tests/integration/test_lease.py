"""Leases on a real Redis (database 11): one holder at a time, taken over at once from a
dead process of this machine, never from a live one or from another machine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
import redis

from smtp_checks.scheduler.leader import LeaderLock
from smtp_checks.shared.lease import Lease, ProcessName, this_machine
from smtp_checks.shared.result_queue import ResultQueue
from tests.redis_fixtures import flushed_redis_db
from tests.smtp_servers import refused_port

KEY = "smtp-checks:test:lease"


@pytest.fixture
def url() -> Iterator[str]:
    yield from flushed_redis_db(11)


@pytest.fixture
def client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def holding_process(url: str, code: str) -> subprocess.Popen[bytes]:
    """Another process that runs `code` (with `client` and `Lease` at hand), says `held`,
    then waits to be killed."""
    script = textwrap.dedent(
        f"""
        import sys, time, redis
        from smtp_checks.shared.lease import Lease
        from smtp_checks.shared.result_queue import ResultQueue
        client = redis.Redis.from_url({url!r})
        {code}
        print("held", flush=True)
        time.sleep(60)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline() == b"held\n"
    return process


def test_only_the_holder_renews_or_releases(client: redis.Redis) -> None:
    mine, other = Lease(client, KEY), Lease(client, KEY)
    assert mine.hold(10) and not other.hold(10)
    assert not other.renew(10) and not other.release()
    assert mine.renew(10) and mine.release()
    assert other.hold(10)


def test_a_dead_holder_of_this_machine_is_replaced_at_once(url: str, client: redis.Redis) -> None:
    process = holding_process(url, f"assert Lease(client, {KEY!r}).hold(60)")
    assert not Lease(client, KEY).hold(60)  # alive: it keeps its lease
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert client.pttl(KEY) > 50_000  # its lease has most of its time to run...
    successor = Lease(client, KEY)
    assert successor.hold(60)  # ...and is taken over all the same
    assert client.get(KEY) == successor.holder.encode()


def test_a_holder_of_another_machine_is_waited_for(client: redis.Redis) -> None:
    elsewhere = ProcessName("other-host~4026531836~abcd", os.getpid() + 1_000_000, "t")
    assert Lease(client, KEY, elsewhere).hold(60)
    assert not Lease(client, KEY).hold(60)
    assert this_machine() != elsewhere.machine


def test_our_own_pid_under_a_token_we_never_made_is_a_predecessor(client: redis.Redis) -> None:
    # A container restarted: the new process has the dead one's pid (1, typically).
    predecessor = ProcessName(this_machine(), os.getpid(), "not-made-here")
    assert Lease(client, KEY, predecessor).hold(60)
    assert Lease(client, KEY).hold(60)


def test_a_dead_consumers_results_are_taken_back_at_once(url: str, client: redis.Redis) -> None:
    queue = ResultQueue(client)
    client.rpush(queue.key, b"r0", b"r1", b"r2")
    process = holding_process(
        url,
        "from smtp_checks.shared.lease import ProcessName\n"
        "        ResultQueue(client).take(str(ProcessName.mine()), 2, lease=60)",
    )
    assert queue.reclaim() == 0  # alive
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert queue.reclaim() == 2  # at once, not after its 60 s lease
    assert queue.take("next", 10, lease=30) == [b"r0", b"r1", b"r2"]


def test_a_beat_that_cannot_reach_redis_tries_the_lock_again_soon_then_less_often() -> None:
    """After a restart or a failover the beat must lead again within about a second, not
    ttl/3 later; while Redis stays away, it backs off to ttl/3."""
    now = [100.0]
    unreachable = redis.Redis(port=refused_port(), socket_connect_timeout=0.2, retry=None)
    lock = LeaderLock(unreachable, "test:leader", ttl=9.0, clock=lambda: now[0])
    waits = []
    for _ in range(6):
        assert lock.tick() is False
        waits.append(lock.next_attempt - now[0])
        now[0] = lock.next_attempt
    assert 0.25 <= waits[0] <= 0.5
    assert all(wait <= 3.0 for wait in waits) and waits[-1] >= 1.5
