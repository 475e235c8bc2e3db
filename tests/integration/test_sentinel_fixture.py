"""tests/sentinel.py's `SentinelGroup`, checked with nothing but redis-py's own Sentinel client.

Replication from the master to the replica; a SIGKILLed master replaced by the replica within
seconds, redis-py's `master_for` client writing to the new master; the old master restarted
and back as a replica of the new one; passwords on the data nodes and on the sentinels;
nothing left running or on disk after `stop()`, nor after the test process is killed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from tests.sentinel import SentinelGroup, require_redis_server

pytestmark = pytest.mark.integration

PASSWORD = "master-secret"
SENTINEL_PASSWORD = "sentinel-secret"
ROOT = Path(__file__).resolve().parents[2]
NO_RETRY = Retry(NoBackoff(), 0)  # a refusal is the answer: redis-py 8 retries it otherwise


@pytest.fixture
def group() -> Iterator[SentinelGroup]:
    with SentinelGroup() as started:
        yield started


@pytest.fixture
def secured_group() -> Iterator[SentinelGroup]:
    with SentinelGroup(password=PASSWORD, sentinel_password=SENTINEL_PASSWORD) as started:
        yield started


def sentinel_client(group: SentinelGroup) -> Sentinel:
    """redis-py's client as an application configures it: the sentinels' password in
    `sentinel_kwargs`, the master's in the other keyword arguments."""
    sentinel_kwargs: dict[str, object] = {"socket_timeout": 1.0}
    if group.sentinel_password:
        sentinel_kwargs["password"] = group.sentinel_password
    return Sentinel(
        group.sentinel_addresses,
        sentinel_kwargs=sentinel_kwargs,
        password=group.password,
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        decode_responses=True,
    )


def gone(pid: int) -> bool:
    """No such process, or only a zombie nobody reaped yet."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in {"Z", "X"}


def test_writes_to_the_master_reach_the_replica(group: SentinelGroup) -> None:
    sentinel = sentinel_client(group)
    master_address, replica_address = (i.address for i in group.data)
    assert group.current_master() == master_address
    assert sentinel.discover_master(group.master_name) == master_address
    assert sentinel.discover_slaves(group.master_name) == [replica_address]
    urls = [f"sentinel://{h}:{p}/3" for h, p in group.sentinel_addresses]
    assert group.sentinel_url(3) == ";".join(urls)

    master = sentinel.master_for(group.master_name)
    replica = sentinel.slave_for(group.master_name)
    master.set("greeting", "hello")
    master.rpush("queue", "a", "b")
    group.wait_for_replica_sync()
    assert replica.get("greeting") == "hello"
    assert replica.lrange("queue", 0, -1) == ["a", "b"]
    with pytest.raises(redis.exceptions.ReadOnlyError):
        replica.set("greeting", "from the replica")

    # As configured: append-only, no snapshots, diskless replication, no eviction.
    with group.client(master_address) as direct:
        config = direct.config_get("*")
    assert config["appendonly"] == "yes"
    assert config["save"] == ""
    assert config["repl-diskless-sync"] == "yes"
    assert config["maxmemory-policy"] == "noeviction"
    assert not list(group.directory.rglob("dump.rdb"))  # (AOF base files are RDB-encoded)
    sentinel.close()


def test_failover_promotes_the_replica_and_the_old_master_rejoins(
    secured_group: SentinelGroup,
) -> None:
    group = secured_group
    old_master, replica = (i.address for i in group.data)
    # Both passwords are enforced: on the sentinels and on the data nodes.
    host, port = group.sentinel_addresses[0]
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(host, port, retry=NO_RETRY).sentinel_masters()
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(*old_master, retry=NO_RETRY).ping()
    chunks = group.sentinel_url(0).split(";")
    assert chunks == [f"sentinel://:{PASSWORD}@{h}:{p}/0" for h, p in group.sentinel_addresses]

    sentinel = sentinel_client(group)
    master = sentinel.master_for(group.master_name)
    master.set("before", "1")
    group.wait_for_replica_sync()

    killed_at = group.kill_master()
    promotion = group.wait_for_promotion(timeout=15)
    promoted_in = promotion.at - killed_at
    master.set("after", "2")  # the same client, on a connection to the dead master until now
    written_in = time.monotonic() - killed_at
    print(
        f"\nsentinel promotion {promoted_in:.2f} s after SIGKILL of the master"
        f" (down-after 1 s); first write through master_for {written_in:.2f} s after it"
    )
    assert promotion.address == replica
    assert promoted_in < 6
    assert sentinel.discover_master(group.master_name) == replica
    assert group.current_master() == replica
    assert master.get("before") == "1"  # replicated before the kill, kept by the new master
    with group.client(replica) as direct:
        assert direct.info("replication")["role"] == "master"

    rejoined_at = time.monotonic()
    assert group.restart_old_master() == old_master
    print(f"old master back as a replica {time.monotonic() - rejoined_at:.2f} s after restart")
    master.set("rejoined", "3")
    group.wait_for_replica_sync()
    with group.client(old_master) as direct:
        info = direct.info("replication")
        assert (info["role"], info["master_port"]) == ("slave", replica.port)
        assert direct.mget("before", "after", "rejoined") == ["1", "2", "3"]
    assert group.current_master() == replica  # no second failover meanwhile
    assert old_master in sentinel.discover_slaves(group.master_name)
    sentinel.close()


def test_stop_leaves_nothing_running_or_on_disk() -> None:
    group = SentinelGroup().start()
    pids = [i.process.pid for i in group.instances if i.process is not None]
    assert len(pids) == 5
    directory = group.directory
    assert directory.is_dir()
    group.stop()
    assert all(gone(pid) for pid in pids)
    assert not directory.exists()
    for instance in group.instances:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(instance.address, timeout=0.5).close()
    group.stop()  # idempotent


def test_processes_die_with_the_test_process() -> None:
    require_redis_server()  # skip (or fail under CI) here, not in the child
    script = textwrap.dedent(
        """
        import time
        from tests.sentinel import SentinelGroup

        group = SentinelGroup().start()
        pids = [i.process.pid for i in group.instances]
        print(group.directory, *pids, flush=True)
        time.sleep(60)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    directory: str | None = None
    try:
        assert child.stdout is not None
        directory, *pid_texts = child.stdout.readline().split()
        pids = [int(p) for p in pid_texts]
        assert len(pids) == 5 and not any(gone(p) for p in pids)
        child.kill()  # no stop(), no finally, no atexit: only the kernel's parent-death signal
        child.wait()
        deadline = time.monotonic() + 5
        while not all(gone(p) for p in pids):
            assert time.monotonic() < deadline, [p for p in pids if not gone(p)]
            time.sleep(0.05)
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
        if directory is not None:  # what a killed process cannot remove
            shutil.rmtree(directory, ignore_errors=True)
