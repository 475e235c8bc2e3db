"""A private Redis Sentinel group (one master, one replica, three sentinels) for failover tests.

`SentinelGroup` starts, in a temporary directory of its own, Debian's `redis-server` five
times on free loopback TCP ports, each instance with its own directory, config file and log:

- a master and a replica (append-only, no RDB snapshots, diskless replication on the
  sending and on the loading side, `noeviction`), optionally with `requirepass`/`masterauth`;
- three sentinels (`redis-server <conf> --sentinel`) monitoring the master under
  `master_name` with quorum 2, `down-after-milliseconds` 1000, `failover-timeout` 5000 and
  `parallel-syncs` 1, optionally with a password of their own (`requirepass` on the
  sentinels, the `sentinel_password` a client gives in redis-py's `sentinel_kwargs`).

It causes and observes failovers: `kill_master()` SIGKILLs the instance the sentinels call
master (`kill_master_unreplicated()` after seconds of writes its replicas missed),
`wait_for_promotion()` waits for the sentinels to name the replica instead,
`restart_old_master()` starts the killed instance again on its port and data (the sentinels
turn it into a replica of the new master) and `wait_for_replica_sync()` waits until every
replica has caught up. Times are `time.monotonic()` values.

Every process is orphan-proof (util-linux `setpriv --pdeathsig KILL`: killed by the kernel if
the test process dies) and a session leader; `stop()` SIGKILLs them all with their process
groups and removes the directory. Skipped when `redis-server` is not installed, a failure
under CI=true.

Timers: the sentinels' internal periods are shortened after start with `SENTINEL DEBUG`
(Redis >= 7.0; `FAST_TIMERS`): a PING every 250 ms instead of every second, INFO every
second instead of every 10 s, hello messages every 500 ms instead of 2 s. The faster PING
is what makes `down-after-milliseconds 1000` safe: with Redis's own 1 s PING period (equal
to down-after) one sentinel now and then judges the just-promoted master down about a
second after the switch and, its peers' votes from the failover still fresh, fails it over
again (5 runs out of 120 under parallel load here; none out of 195 with these timers). The
others speed up the sentinels learning of each other and of the new master, and the
demotion of a restarted old master (4 hello periods after they see it: 2 s instead of 8 s,
plus the INFO period). `timers=None` keeps Redis's periods.

    with SentinelGroup() as group:
        sentinel = redis.sentinel.Sentinel(group.sentinel_addresses)
        master = sentinel.master_for(group.master_name)
        killed_at = group.kill_master()
        promotion = group.wait_for_promotion()
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self

import pytest
import redis

HOST = "127.0.0.1"
FAST_TIMERS: Mapping[str, int] = {"ping-period": 250, "info-period": 1000, "publish-period": 500}


class Address(NamedTuple):
    host: str
    port: int


class Promotion(NamedTuple):
    """The master the sentinels switched to, and when the first of them named it."""

    address: Address
    at: float


def require_redis_server() -> str:
    """The `redis-server` binary; skip the test without it (a failure under CI=true)."""
    found = shutil.which("redis-server")
    if found is None:
        message = "redis-server not installed: apt-get install redis-server"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: the tests that start Redis must run)")
        pytest.skip(message)
    return found


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (all held open while choosing)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((HOST, 0))
            ports.append(sock.getsockname()[1])
    return ports


def orphan_proof(argv: list[str]) -> list[str]:
    """`argv`, killed by the kernel if the test process dies (util-linux `setpriv
    --pdeathsig`, when installed). The death signal follows the thread that started the
    process: start these from the main thread."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else argv


def wait_until(
    predicate: Callable[[], Any], timeout: float, what: str, *, every: float = 0.02
) -> Any:
    """Poll `predicate` (Redis errors count as false) until it returns something true."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError):
            value = predicate()
            if value:
                return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(every)


class Instance:
    """One redis-server (data node or sentinel) of the group: its port, directory, config."""

    def __init__(
        self, name: str, port: int, directory: Path, config: str, *, sentinel: bool
    ) -> None:
        self.name = name
        self.port = port
        self.address = Address(HOST, port)
        self.directory = directory
        self.sentinel = sentinel
        self.config_file = directory / ("sentinel.conf" if sentinel else "redis.conf")
        self.log_file = directory / ("sentinel.log" if sentinel else "redis.log")
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True)
        self.config_file.write_text(config)

    def __repr__(self) -> str:
        return f"<{self.name} {self.address.host}:{self.port} {'up' if self.running else 'down'}>"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, binary: str) -> None:
        assert not self.running, f"{self.name} is already running"
        argv = [binary, str(self.config_file), *(["--sentinel"] if self.sentinel else [])]
        self.process = subprocess.Popen(
            orphan_proof(argv),
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL, with whatever it forked (an AOF rewrite): a crash, not a shutdown."""
        process = self.process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class SentinelGroup:
    """One master, one replica and three sentinels on loopback; see the module docstring."""

    def __init__(
        self,
        master_name: str = "smtp-checks",
        *,
        password: str | None = None,
        sentinel_password: str | None = None,
        quorum: int = 2,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
        timers: Mapping[str, int] | None = FAST_TIMERS,
    ) -> None:
        self.binary = require_redis_server()
        self.master_name = master_name
        self.password = password
        self.sentinel_password = sentinel_password
        self.timers = dict(timers or {})
        self.directory = Path(tempfile.mkdtemp(prefix="smtp-checks-sentinel-"))
        master_port, replica_port, *sentinel_ports = free_ports(5)
        self.data = [
            self._data_instance("redis-a", master_port, replica_of=None),
            self._data_instance("redis-b", replica_port, replica_of=master_port),
        ]
        self.sentinels = [
            self._sentinel_instance(f"sentinel-{n}", port, master_port, quorum, down_after_ms,
                                    failover_timeout_ms)
            for n, port in enumerate(sentinel_ports, start=1)
        ]  # fmt: skip
        self._sentinel_clients: list[redis.Redis] = []
        self.killed: Instance | None = None
        self.started = False

    # --- configuration --------------------------------------------------------------------

    def _data_instance(self, name: str, port: int, *, replica_of: int | None) -> Instance:
        directory = self.directory / name
        lines = [
            f"bind {HOST}",
            f"port {port}",
            "daemonize no",
            f"dir {directory}",
            f"logfile {directory / 'redis.log'}",
            "appendonly yes",
            "appendfsync everysec",
            'save ""',
            "maxmemory-policy noeviction",
            # A full sync streams the RDB over the socket on both sides: no dump.rdb anywhere.
            "repl-diskless-sync yes",
            "repl-diskless-sync-delay 0",
            "repl-diskless-load swapdb",
            f"replica-announce-ip {HOST}",
        ]
        if self.password:
            # masterauth on every node: any of them may become the replica of another.
            lines += [f"requirepass {self.password}", f"masterauth {self.password}"]
        if replica_of is not None:
            lines.append(f"replicaof {HOST} {replica_of}")
        return Instance(name, port, directory, "\n".join(lines) + "\n", sentinel=False)

    def _sentinel_instance(
        self,
        name: str,
        port: int,
        master_port: int,
        quorum: int,
        down_after_ms: int,
        failover_timeout_ms: int,
    ) -> Instance:
        directory = self.directory / name
        group = self.master_name
        lines = [
            f"bind {HOST}",
            f"port {port}",
            "daemonize no",
            f"dir {directory}",
            f"logfile {directory / 'sentinel.log'}",
            "sentinel resolve-hostnames no",
            f"sentinel announce-ip {HOST}",
            f"sentinel monitor {group} {HOST} {master_port} {quorum}",
            f"sentinel down-after-milliseconds {group} {down_after_ms}",
            f"sentinel failover-timeout {group} {failover_timeout_ms}",
            f"sentinel parallel-syncs {group} 1",
        ]
        if self.password:
            lines.append(f"sentinel auth-pass {group} {self.password}")
        if self.sentinel_password:
            # Clients must authenticate to the sentinels; the sentinels to each other too.
            lines += [
                f"requirepass {self.sentinel_password}",
                f"sentinel sentinel-pass {self.sentinel_password}",
            ]
        return Instance(name, port, directory, "\n".join(lines) + "\n", sentinel=True)

    # --- what clients are given -----------------------------------------------------------

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [(HOST, s.port) for s in self.sentinels]

    @property
    def sentinel_kwargs(self) -> dict[str, Any]:
        """redis-py's `Sentinel(..., sentinel_kwargs=...)`: how to connect to the sentinels
        themselves (the master's password goes in the other keyword arguments)."""
        kwargs: dict[str, Any] = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
        if self.sentinel_password:
            kwargs["password"] = self.sentinel_password
        return kwargs

    def sentinel_url(self, db: int = 0) -> str:
        """kombu's broker URL for the group: `sentinel://[:PASSWORD@]HOST:PORT/DB` for each
        sentinel, joined by `;`. kombu (and Celery's result backend) read the database and
        the password from the first of them only, so each carries both. The password is
        the master's; the sentinels' own goes in the transport option `sentinel_kwargs`."""
        auth = f":{self.password}@" if self.password else ""
        return ";".join(f"sentinel://{auth}{host}:{port}/{db}" for host, port in
                        self.sentinel_addresses)  # fmt: skip

    def transport_options(self) -> dict[str, Any]:
        """kombu/Celery `broker_transport_options` for `sentinel_url()`."""
        options: dict[str, Any] = {"master_name": self.master_name}
        if self.sentinel_password:
            options["sentinel_kwargs"] = {"password": self.sentinel_password}
        return options

    def client(self, address: tuple[str, int], **kwargs: Any) -> redis.Redis:
        """A plain client of one data node (the caller closes it)."""
        kwargs.setdefault("socket_timeout", 1.0)
        kwargs.setdefault("socket_connect_timeout", 0.5)
        kwargs.setdefault("decode_responses", True)
        return redis.Redis(address[0], address[1], password=self.password, **kwargs)

    # --- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout: float = 20.0) -> Self:
        """Master, replica (synced), then the sentinels, until each of them knows the
        replica and the two other sentinels."""
        try:
            master, replica = self.data
            for instance in (master, replica):
                instance.start(self.binary)
                self._wait_answering(instance, timeout)
            self.wait_for_replica_sync(timeout)
            for sentinel in self.sentinels:
                sentinel.start(self.binary)
            for sentinel in self.sentinels:
                self._wait_answering(sentinel, timeout)
                client = self._sentinel_client(sentinel)
                self._sentinel_clients.append(client)
                if self.timers:
                    args = [x for item in self.timers.items() for x in item]
                    client.execute_command("SENTINEL", "DEBUG", *args)
            others = len(self.sentinels) - 1
            wait_until(
                lambda: all(
                    state["num-slaves"] >= 1 and state["num-other-sentinels"] >= others
                    and state["is_master"] and not state["is_sdown"]
                    for state in self._sentinel_states()
                ),
                timeout,
                f"every sentinel knows the replica and the {others} other sentinels",
                every=0.05,
            )  # fmt: skip
        except BaseException:
            self.stop()
            raise
        self.started = True
        return self

    def stop(self) -> None:
        """SIGKILL everything, close our clients, remove the directory. Idempotent."""
        for client in self._sentinel_clients:
            with contextlib.suppress(Exception):
                client.close()
        self._sentinel_clients.clear()
        for instance in [*self.sentinels, *self.data]:
            instance.kill()
        shutil.rmtree(self.directory, ignore_errors=True)
        self.started = False

    @property
    def instances(self) -> list[Instance]:
        return [*self.data, *self.sentinels]

    def _sentinel_client(self, sentinel: Instance) -> redis.Redis:
        return redis.Redis(HOST, sentinel.port, decode_responses=True, **self.sentinel_kwargs)

    def _wait_answering(self, instance: Instance, timeout: float) -> None:
        password = self.sentinel_password if instance.sentinel else self.password
        client = redis.Redis(
            HOST, instance.port, password=password, socket_timeout=0.5,
            socket_connect_timeout=0.5, decode_responses=True,
        )  # fmt: skip

        def answers() -> bool:
            assert instance.running, f"{instance.name} exited:\n{instance.log()[-3000:]}"
            # A replica loading its data answers LOADING errors: a RedisError, not yet.
            return bool(client.ping())

        try:
            wait_until(answers, timeout, f"{instance.name} answers on port {instance.port}")
        finally:
            client.close()

    # --- what the sentinels say -----------------------------------------------------------

    def _sentinel_states(self) -> list[dict[str, Any]]:
        return [c.sentinel_master(self.master_name) for c in self._sentinel_clients]

    def masters_reported(self) -> list[Address | None]:
        """`SENTINEL GET-MASTER-ADDR-BY-NAME` as each sentinel answers it (None: no answer)."""
        answers: list[Address | None] = []
        for client in self._sentinel_clients:
            try:
                host, port = client.sentinel_get_master_addr_by_name(self.master_name)
                answers.append(Address(host, int(port)))
            except (redis.RedisError, TypeError, ValueError):
                answers.append(None)
        return answers

    def current_master(self) -> Address:
        """The master a majority of the sentinels report (AssertionError when none has)."""
        counts = Counter(a for a in self.masters_reported() if a is not None)
        if counts:
            address, votes = counts.most_common(1)[0]
            if votes > len(self.sentinels) // 2:
                return address
        raise AssertionError(f"no majority of sentinels names a master: {dict(counts)}")

    def instance_at(self, address: tuple[str, int]) -> Instance:
        for instance in self.data:
            if instance.port == address[1]:
                return instance
        raise KeyError(address)

    # --- failover -------------------------------------------------------------------------

    def kill_master(self) -> float:
        """SIGKILL the master the sentinels report; its `time.monotonic()` at the kill."""
        instance = self.instance_at(self.current_master())
        assert instance.running, f"{instance.name}, the master, is not running"
        instance.kill()
        killed_at = time.monotonic()
        self.killed = instance
        return killed_at

    def kill_master_unreplicated(self, lag: float) -> float:
        """SIGKILL the master after `lag` seconds of writes its replicas never received:
        their replication link cut (the master drops it, and they cannot sync again: their
        `masterauth` is wrong meanwhile), as a crash under replication lag loses the last
        writes. The replicas still answer the sentinels, who promote one as usual. Its
        `time.monotonic()` at the kill."""
        replicas = self.replicas()
        for instance in replicas:
            with self.client(instance.address) as client:
                client.config_set("masterauth", "smtp-checks-cut-off")
        try:
            with self.client(self.current_master()) as client:
                client.client_kill_filter(_type="replica")
            time.sleep(lag)
            killed_at = self.kill_master()
        finally:
            for instance in replicas:
                with self.client(instance.address) as client:
                    client.config_set("masterauth", self.password or "")
        return killed_at

    def wait_for_promotion(self, timeout: float = 15.0) -> Promotion:
        """Wait until the sentinels name a master other than the killed one; return it with
        the time the first sentinel named it (after every sentinel agrees on it and it
        answers as a master)."""
        assert self.killed is not None, "kill_master() first"
        old = self.killed.address
        first: dict[Address, float] = {}

        def switched() -> Address | None:
            now = time.monotonic()
            answers = self.masters_reported()
            for address in answers:
                if address is not None and address != old:
                    first.setdefault(address, now)
            if len(first) > 1:
                raise AssertionError(f"the sentinels named several new masters: {first}")
            new = next(iter(first), None)
            if new is None or any(a != new for a in answers):
                return None
            with self.client(new) as client:
                return new if client.info("replication")["role"] == "master" else None

        address = wait_until(switched, timeout, f"the sentinels promote a new master ({old})")
        return Promotion(address, first[address])

    def restart_old_master(self, timeout: float = 15.0) -> Address:
        """Start the killed instance again on its port, config and data; return once the
        sentinels have made it a replica of the current master, its link up. Its address."""
        instance = self.killed
        assert instance is not None, "kill_master() first"
        assert not instance.running
        instance.start(self.binary)
        self._wait_answering(instance, timeout)
        self.killed = None
        master = self.current_master()
        assert master != instance.address, "the sentinels still name the killed master"
        with self.client(instance.address) as client:
            wait_until(
                lambda: self._replicates(client.info("replication"), master),
                timeout,
                f"{instance.name} restarted as a replica of {master}",
                every=0.05,
            )
        return instance.address

    @staticmethod
    def _replicates(info: Mapping[str, Any], master: Address) -> bool:
        return (
            info.get("role") == "slave"
            and int(info.get("master_port", 0)) == master.port
            and info.get("master_link_status") == "up"
            and int(info.get("master_sync_in_progress", 1)) == 0
        )

    def replicas(self) -> list[Instance]:
        """The running data nodes other than the current master."""
        master = self.current_master() if self.started else self.data[0].address
        return [i for i in self.data if i.running and i.address != master]

    def wait_for_replica_sync(self, timeout: float = 10.0) -> None:
        """Wait until every running replica replicates the current master, link up and
        caught up with the master's replication offset as of this call."""
        master = self.current_master() if self.started else self.data[0].address
        with self.client(master) as client:
            target = int(client.info("replication")["master_repl_offset"])
        for instance in self.replicas():
            with self.client(instance.address) as client:

                def synced(client: redis.Redis = client) -> bool:
                    info = client.info("replication")
                    offset = int(info.get("slave_repl_offset", -1))
                    return self._replicates(info, master) and offset >= target

                wait_until(synced, timeout, f"{instance.name} in sync with {master}")
