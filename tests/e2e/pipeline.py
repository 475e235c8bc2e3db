"""The whole system as real processes, for end-to-end and fault tests.

A `Pipeline` owns, in a directory of its own:

- a redis-server on a free loopback TCP port, append-only and without snapshots, so it can
  be stopped and started again on the same port with its data (the Redis-restart fault);
  or, given one, a Sentinel group (tests/sentinel.py) that every role reaches through its
  sentinels (`sentinel://` URLs, and `sentinel_master` from the environment too), for the
  failover faults;
- a real Nagios 4 core reading the command file (tests/nagios.py's configuration), which
  can be stopped and started again on the same FIFO (the Centreon-gone fault);
- a config file with two sites, `paris` and `lyon` (and any other site `workers=` names),
  short intervals and timeouts;
- the roles as real processes, exactly as deployed: `python -m smtp_checks.cli.main beat |
  worker | consumer --config FILE`, pointed at that Redis through SMTP_CHECKS_BROKER_URL and
  SMTP_CHECKS_REDIS_URL (as `smtp-checks run` does), each logging to a file of its own.

It reads back what the tests count: the runs the beat enqueued (its DEBUG log names every
run id), every result a worker published (Redis's append-only file is the log of every
write, across restarts), the orphans the consumer reported (its log names each run), the
outstanding ledger, the outboxes, the consumer's counters (logged on SIGTERM) and what
Nagios logged and shows in status.dat.

`close()` stops everything it started, by process id, and kills what does not stop.
"""

from __future__ import annotations

import ast
import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import redis.sentinel
import yaml

from smtp_checks.consumer.forwarders.base import PassiveResult
from smtp_checks.consumer.forwarders.command_file import command_line
from smtp_checks.shared.config import EngineReader, load_config
from smtp_checks.shared.keys import KEYS
from smtp_checks.shared.ledger import OutstandingRun
from smtp_checks.shared.messages import CheckResult
from tests.nagios import NAGIOS, Nagios, prepare, require_nagios
from tests.sentinel import SentinelGroup, require_redis_server

RESULTS_KEY = KEYS.results
SITES = ("paris", "lyon")

_ENQUEUED = re.compile(r"enqueued (\S+) run ([0-9a-f]+) scheduled for ([\d.]+) on (\S+)")
_STOPPED = re.compile(r"consumer: stopped: (\{.*\})$", re.MULTILINE)
_ORPHANED = re.compile(r"orphaned: \S+ run ([0-9a-f]+),")
_EXTERNAL = re.compile(r"^\[(\d+)\] EXTERNAL COMMAND: PROCESS_SERVICE_CHECK_RESULT;(.*)$")


def host(name: str, site: str, port: int, checks: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A host of the config, on a loopback server."""
    return {
        "name": name,
        "address": "127.0.0.1",
        "port": port,
        "site": site,
        "checks": checks,
        **extra,
    }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wait_until(
    predicate: Callable[[], Any], timeout: float, what: str, *, every: float = 0.2
) -> Any:
    """Poll `predicate` until it returns something true; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(every)


def orphan_proof(argv: list[str]) -> list[str]:
    """`argv`, killed by the kernel if the test process dies, however it dies (util-linux
    `setpriv --pdeathsig`, when installed): no stray process outlives a killed test run."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else argv


class _Stoppable:
    """A child process of ours: stopped by its id, killed (with its group) if it lingers."""

    process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _terminate(self, sig: int = signal.SIGTERM, wait: float = 20.0) -> int | None:
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
            try:
                process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        # Anything it left behind in its own process group (it was a session leader).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        return process.returncode


def _test_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a certificate for 127.0.0.1: (ca, cert, key) files."""
    import trustme

    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    files = (directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    ca.cert_pem.write_to_path(str(files[0]))
    leaf.cert_chain_pems[0].write_to_path(str(files[1]))
    leaf.private_key_pem.write_to_path(str(files[2]))
    return files


class RedisServer(_Stoppable):
    """redis-server on 127.0.0.1:<port>, persisting to `directory` (append-only file)."""

    def __init__(self, directory: Path, password: str | None = None, *, tls: bool = False) -> None:
        self.binary = require_redis_server()
        self.directory = directory
        self.port = free_port()
        self.password = password
        self.tls_files: tuple[Path, Path, Path] | None = None
        auth = f":{password}@" if password else ""
        if tls:
            self.tls_files = _test_certificates(directory)
            ca = self.tls_files[0]
            self.url = (
                f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_cert_reqs=required&ssl_ca_certs={ca}"
            )
        else:
            self.url = f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            orphan_proof([
                self.binary, "--bind", "127.0.0.1", "--port", str(self.port),
                # No automatic rewrite: the append-only files keep every write (`writes()`).
                "--dir", str(self.directory), "--appendonly", "yes", "--save", "",
                "--auto-aof-rewrite-percentage", "0",
                "--maxmemory-policy", "noeviction", "--logfile", str(self.directory / "redis.log"),
                *(["--requirepass", self.password] if self.password else []),
                *self._tls_arguments(),
            ]),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        try:
            deadline = time.monotonic() + timeout
            while True:
                assert self.process.poll() is None, (self.directory / "redis.log").read_text()
                with contextlib.suppress(redis.RedisError):
                    if client.ping():
                        return
                assert time.monotonic() < deadline, "redis-server did not answer in time"
                time.sleep(0.05)
        finally:
            client.close()

    def _tls_arguments(self) -> list[str]:
        """TLS only on the port clients use (the plain port off), clients not asked for a
        certificate."""
        if self.tls_files is None:
            return []
        ca, cert, key = self.tls_files
        return [
            "--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert),
            "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no",
        ]  # fmt: skip

    def stop(self) -> None:
        """A clean shutdown: the append-only file is complete, the next start has it all."""
        self._terminate(signal.SIGTERM, wait=10.0)
        self.process = None


class NagiosEngine(Nagios, _Stoppable):
    """tests/nagios.py's Nagios 4, in a directory that outlives a stop, so it can be started
    again on the same command file (the FIFO stays; it has no reader while stopped)."""

    def __init__(self, services: list[tuple[str, str]]) -> None:
        require_nagios()
        super().__init__(Path(tempfile.mkdtemp(prefix="smtp-checks-e2e-nagios-")))
        self.config = prepare(self.directory, services)
        self._watchdog: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert not self.running
        self.status_file.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            orphan_proof([NAGIOS, str(self.config)]),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        # Nagios drops to its own user, which clears the parent-death signal: a watchdog
        # kills its process group instead if this test process dies without stopping it.
        self._watchdog = subprocess.Popen(
            [
                "sh", "-c",
                f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done; "
                f"kill -KILL -{self.process.pid} 2>/dev/null",
            ],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        # Up once it reads its command file and writes its status.
        wait_until(
            lambda: self.command_file.exists() and self.status_file.exists(),
            15,
            f"Nagios started (its log: {self.directory / 'nagios.log'})",
            every=0.05,
        )
        os.chmod(self.command_file, 0o666)

    def stop(self) -> None:
        self._terminate(signal.SIGTERM, wait=10.0)
        self.process = None
        if self._watchdog is not None:
            self._watchdog.kill()
            self._watchdog.wait()
            self._watchdog = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def commands(self) -> list[tuple[int, str]]:
        """Every PROCESS_SERVICE_CHECK_RESULT Nagios read: (when it read it, the command's
        arguments `host;service;code;output`), in the order it read them."""
        found = []
        for line in self.log().splitlines():
            match = _EXTERNAL.match(line)
            if match:
                found.append((int(match.group(1)), match.group(2)))
        return found

    def last_checks(self) -> dict[tuple[str, str], int]:
        return {key: int(block.get("last_check", "0")) for key, block in self.services().items()}


@dataclass
class Role(_Stoppable):
    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    exit_codes: list[int | None] = field(default_factory=list)


@dataclass(frozen=True)
class Run:
    """One run the beat enqueued."""

    run_id: str
    check_id: str
    scheduled_for: float
    queue: str


class Pipeline:
    """Redis, Nagios, the config and the roles; see the module docstring."""

    def __init__(
        self,
        directory: Path,
        hosts: list[dict[str, Any]],
        *,
        workers: dict[str, list[str]] | None = None,
        interval: int = 2,
        timeout: float = 1.0,
        resend_interval: int = 4,
        orphan_grace: int = 3,
        visibility_timeout: int | None = None,
        spool: bool = False,
        redis_password: str | None = None,
        redis_tls: bool = False,
        forwarders: list[dict[str, Any]] | None = None,
        concurrency: int = 50,
        metrics: bool = False,
        self_check: str | None = None,
        sentinel: SentinelGroup | None = None,
    ) -> None:
        """`metrics`: every role serves its Prometheus metrics (`metrics_url(name)`);
        `self_check`: the Centreon host of the pipeline's own services (Nagios has them)."""
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.worker_names = workers or {"paris": ["paris-1"], "lyon": ["lyon-1"]}
        # paris and lyon, and any other site `workers` names
        self.sites = tuple(dict.fromkeys([*SITES, *self.worker_names]))
        self.interval = interval
        self.timeout = timeout
        self.orphan_grace = orphan_grace
        self.redis = RedisServer(directory / "redis", password=redis_password, tls=redis_tls)
        self.sentinel = sentinel  # started and stopped by its owner
        self.roles: dict[str, Role] = {}
        self._closers: list[Callable[[], None]] = []
        self.spool = directory / "spool.cmd" if spool else None
        self.config_path = directory / "config.yaml"
        settings: dict[str, Any] = {
            # As short as the config allows (twice the timeout): a dead worker's checks
            # come back within seconds.
            "visibility_timeout": visibility_timeout or max(2, math.ceil(2 * timeout)),
            "defaults": {"interval": interval, "timeout": timeout, "tls": "none"},
            "sites": {site: {} for site in self.sites},
            # Generous: these tests are about the pipeline, not the per-server limits.
            "target_limits": {"max_concurrent": 20, "max_per_minute": 6000},
            "hosts": hosts,
            "centreon": {
                "forwarders": [],  # filled in once Nagios has its directory
                "resend_interval": resend_interval,
                "orphan_grace": orphan_grace,
                **({"self_check": {"host": self_check}} if self_check else {}),
            },
        }
        self.config_path.write_text(yaml.safe_dump(settings, sort_keys=False))
        self.config = load_config(self.config_path)
        self.services = [(c.host, c.service) for c in self.config.scheduled_checks()]
        self.site_of = {(c.host, c.service): c.site for c in self.config.scheduled_checks()}
        pipeline_services = [
            (self_check, service) for service in [*(f"Site-{s}" for s in self.sites), "Pipeline"]
        ] if self_check else []  # fmt: skip
        self.nagios = NagiosEngine(self.services + pipeline_services)
        self._closers.append(self.nagios.close)
        # Nagios unescapes in one pass: server text is then shown exactly as sent.
        written = [{"type": "command_file", "path": str(self.nagios.command_file)}]
        if self.spool is not None:
            self.spool.touch()
            written.append({"type": "command_file", "path": str(self.spool)})
        settings["centreon"]["forwarders"] = [
            *({**forwarder, "engine": "nagios"} for forwarder in written),
            *(forwarders or []),
        ]
        self.config_path.write_text(yaml.safe_dump(settings, sort_keys=False))
        self.config = load_config(self.config_path)
        self.env = {
            **os.environ,
            "SMTP_CHECKS_BROKER_URL": self.redis_url,
            "SMTP_CHECKS_REDIS_URL": self.redis_url,
            **({"SMTP_CHECKS_SENTINEL_MASTER": sentinel.master_name} if sentinel else {}),
            "PYTHONUNBUFFERED": "1",
        }
        self._client: redis.Redis | None = None
        self._metrics = metrics
        self.metrics_addresses: dict[str, str] = {}
        command = [sys.executable, "-m", "smtp_checks.cli.main"]
        common = ["--config", str(self.config_path)]
        logs = directory / "logs"
        logs.mkdir(exist_ok=True)
        # DEBUG: the beat logs every run it enqueues, with its id (what the tests count).
        self._add(
            Role("beat", [*command, "beat", *common, "--loglevel", "DEBUG"], logs / "beat.log")
        )
        for site, names in self.worker_names.items():
            for name in names:
                argv = [*command, "worker", *common, "--site", site]
                argv += ["--concurrency", str(concurrency)]
                argv += ["--hostname", f"{name}@e2e", "--loglevel", "INFO"]
                self._add(Role(name, argv, logs / f"{name}.log"))
        self._add(Role("consumer", [*command, "consumer", *common], logs / "consumer.log"))

    def _add(self, role: Role) -> None:
        if self._metrics:
            address = f"127.0.0.1:{free_port()}"
            role.argv += ["--metrics", address]
            self.metrics_addresses[role.name] = address
        self.roles[role.name] = role

    def metrics_url(self, name: str) -> str:
        return f"http://{self.metrics_addresses[name]}/metrics"

    # --- lifecycle --------------------------------------------------------------------------

    def start(self, *, roles: list[str] | None = None) -> Pipeline:
        """Redis, Nagios, then the roles (all of them unless `roles` names some)."""
        if self.sentinel is None:
            self.redis.start()
        self.nagios.start()
        names = roles if roles is not None else list(self.roles)
        for name in names:
            if name != "beat":
                self.start_role(name)
        # The beat last, once the workers consume: its first runs are not left waiting.
        for name in names:
            if name in self.workers():
                self.wait_ready(name)
        if "beat" in names:
            self.start_role("beat")
        return self

    def workers(self, site: str | None = None) -> list[str]:
        return [
            name
            for each, names in self.worker_names.items()
            if site in (None, each)
            for name in names
        ]

    def wait_ready(self, name: str, timeout: float = 30.0) -> None:
        """Wait for a worker that has started (this time) to consume its queue."""
        role = self.roles[name]
        wait_until(
            lambda: self.log(name).count("@e2e ready") >= role.starts,
            timeout,
            f"worker {name} ready",
            every=0.05,
        )

    def start_role(self, name: str) -> None:
        role = self.roles[name]
        assert not role.running, f"{name} is already running"
        with role.log.open("ab") as log:
            role.process = subprocess.Popen(
                orphan_proof(role.argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, cwd=Path(__file__).resolve().parents[2], start_new_session=True,
            )  # fmt: skip
        role.starts += 1

    def kill(self, name: str) -> None:
        """SIGKILL: no goodbye, whatever it had in hand stays where it was."""
        role = self.roles[name]
        role.exit_codes.append(role._terminate(signal.SIGKILL))

    def stop(self, name: str) -> int | None:
        """SIGTERM: a clean stop (workers give back what they had, the consumer logs its
        counters); the exit code."""
        role = self.roles[name]
        code = role._terminate(signal.SIGTERM)
        role.exit_codes.append(code)
        return code

    def restart_redis(self, down_for: float) -> None:
        self.redis.stop()
        time.sleep(down_for)
        self.redis.start()

    def close(self) -> None:
        """Stop every role (cleanly if it will), then Nagios and Redis. Never raises."""
        running = [role for role in self.roles.values() if role.running]
        for role in running:
            with contextlib.suppress(ProcessLookupError):
                role.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        for role in running:
            with contextlib.suppress(Exception):
                role._terminate(signal.SIGTERM, wait=15.0)
        for role in self.roles.values():  # killed earlier, or never stopped: no stragglers
            with contextlib.suppress(Exception):
                role._terminate(signal.SIGKILL, wait=5.0)
        if self._client is not None:
            self._client.close()
        for closer in reversed(self._closers):
            with contextlib.suppress(Exception):
                closer()
        with contextlib.suppress(Exception):
            self.redis.stop()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- what the tests read ----------------------------------------------------------------

    @property
    def redis_url(self) -> str:
        """What the roles are given as broker_url and redis_url."""
        return self.redis.url if self.sentinel is None else self.sentinel.sentinel_url()

    @property
    def client(self) -> redis.Redis:
        """A client of the roles' Redis (behind Sentinel: of the current master)."""
        if self._client is None:
            if self.sentinel is None:
                self._client = redis.Redis.from_url(self.redis.url, decode_responses=True)
            else:
                group = self.sentinel
                sentinels = redis.sentinel.Sentinel(
                    group.sentinel_addresses, sentinel_kwargs=group.sentinel_kwargs
                )
                self._client = sentinels.master_for(
                    group.master_name, password=group.password, decode_responses=True,
                    socket_timeout=2.0, socket_connect_timeout=1.0,
                )  # fmt: skip
        return self._client

    def log(self, name: str) -> str:
        path = self.roles[name].log
        return path.read_text(errors="replace") if path.exists() else ""

    def alive(self) -> dict[str, bool]:
        return {name: role.running for name, role in self.roles.items()}

    def runs(self) -> dict[str, Run]:
        """Every run the beat enqueued (all its lives), by run id."""
        found: dict[str, Run] = {}
        for match in _ENQUEUED.finditer(self.log("beat")):
            check_id, run_id, scheduled_for, queue = match.groups()
            assert run_id not in found, f"run {run_id} enqueued twice"
            found[run_id] = Run(run_id, check_id, float(scheduled_for), queue)
        return found

    def writes(self) -> list[list[bytes]]:
        """Every write Redis has executed, in order, across restarts: its append-only files
        (behind Sentinel: the current master's, which has what it replicated before)."""
        if self.sentinel is None:
            return aof_writes(self.redis.directory)
        return aof_writes(self.sentinel.instance_at(self.sentinel.current_master()).directory)

    def published(self, writes: list[list[bytes]] | None = None) -> list[CheckResult]:
        """Every result a worker published to the result queue, in order (duplicates too),
        among `writes` (default: `writes()`)."""
        return [
            CheckResult.model_validate_json(value)
            for command in (self.writes() if writes is None else writes)
            if command[0].upper() == b"RPUSH" and command[1] == RESULTS_KEY.encode()
            for value in command[2:]
        ]

    def orphaned(self) -> list[str]:
        """The runs the consumer reported as orphans (its log names each one)."""
        return _ORPHANED.findall(self.log("consumer"))

    def outcomes(self, run_ids: list[str]) -> dict[str, tuple[int, int]]:
        """For each run: (results published for it, orphan reports made for it)."""
        results = Counter(result.run_id for result in self.published())
        orphans = Counter(self.orphaned())
        return {run_id: (results[run_id], orphans[run_id]) for run_id in run_ids}

    def outstanding(self) -> list[OutstandingRun]:
        return [OutstandingRun.from_json(raw) for raw in self.client.hvals(KEYS.outstanding_runs)]

    def results_waiting(self) -> int:
        """Results not yet recorded: queued, or in a consumer's hands."""
        waiting = int(self.client.llen(KEYS.results))
        for key in self.client.scan_iter(KEYS.results_inflight("*")):
            waiting += int(self.client.llen(key))
        return waiting

    def outbox_key(self, path: Path) -> str:
        return KEYS.outbox(f"command_file:{path}")

    def outbox(self, path: Path) -> list[PassiveResult]:
        """What waits for delivery to `path`, in delivery order (the batch in flight first)."""
        key = self.outbox_key(path)
        raw = self.client.lrange(f"{key}:inflight", 0, -1) + self.client.lrange(key, 0, -1)
        return [PassiveResult.from_json(json.loads(item)) for item in raw]

    def states(self) -> dict[tuple[str, str], dict[str, Any]]:
        """The consumer's last state of every service."""
        return {
            tuple(json.loads(name)): json.loads(value)  # type: ignore[misc]
            for name, value in self.client.hgetall(KEYS.states).items()
        }

    def consumer_counts(self) -> list[dict[str, int]]:
        """The counters each consumer life logged when it stopped cleanly."""
        return [ast.literal_eval(found) for found in _STOPPED.findall(self.log("consumer"))]

    def describe(self, tail: int = 40) -> str:
        """The last lines of every log, for a failing test's report."""
        parts = []
        for name, role in self.roles.items():
            lines = self.log(name).splitlines()
            if name == "beat":  # its DEBUG lines would drown the rest
                lines = [line for line in lines if " DEBUG " not in line]
            parts.append(f"--- {name} ({role.log})\n" + "\n".join(lines[-tail:]))
        parts.append("--- nagios\n" + "\n".join(self.nagios.log().splitlines()[-tail:]))
        return "\n".join(parts)

    def status(self) -> tuple[int, str]:
        """`smtp-checks status` as an operator runs it: its exit code and output."""
        completed = subprocess.run(
            [sys.executable, "-m", "smtp_checks.cli.main", "status", "--config",
             str(self.config_path)],
            env=self.env, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        return completed.returncode, completed.stdout

    def spool_lines(self) -> list[str]:
        assert self.spool is not None
        return self.spool.read_text().splitlines()

    def settle(self, timeout: float = 30.0) -> dict[str, Run]:
        """Stop the beat, then wait until every run it enqueued has an outcome: nothing
        outstanding in the ledger, no result waiting. The runs it enqueued."""
        self.stop("beat")
        wait_until(
            lambda: not self.outstanding() and self.results_waiting() == 0,
            timeout,
            "every enqueued run settled (ledger empty, no result waiting)",
        )
        return self.runs()

    def wait_for_services(
        self, predicate: Callable[[dict[str, str]], bool], timeout: float, what: str, *,
        services: list[tuple[str, str]] | None = None,
    ) -> dict[tuple[str, str], dict[str, str]]:  # fmt: skip
        """Wait until `predicate` holds for every one of `services` (default: all) in
        Nagios's status.dat."""
        keys = services if services is not None else self.services

        def ready() -> dict[tuple[str, str], dict[str, str]] | None:
            status = self.nagios.services()
            return status if all(k in status and predicate(status[k]) for k in keys) else None

        try:
            return wait_until(ready, timeout, what)  # type: ignore[no-any-return]
        except AssertionError as error:
            status = self.nagios.services()
            shown = {k: (v.get("current_state"), v.get("plugin_output")) for k, v in status.items()}
            raise AssertionError(f"{error}; Nagios shows {shown}") from None


def aof_writes(directory: Path) -> list[list[bytes]]:
    """The writes in the append-only files of the redis-server whose `dir` is `directory`,
    in order (the incremental files: the base a replica's first sync made is empty here)."""
    directory = directory / "appendonlydir"
    manifest = directory / "appendonly.aof.manifest"
    if not manifest.exists():
        return []
    incremental = []
    for line in manifest.read_text().splitlines():
        words = line.split()
        attributes = dict(zip(words[::2], words[1::2], strict=False))
        if attributes.get("type") == "i":
            incremental.append((int(attributes["seq"]), directory / attributes["file"]))
    commands: list[list[bytes]] = []
    for _, path in sorted(incremental):
        commands += _resp_commands(path.read_bytes())
    return commands


def _resp_commands(data: bytes) -> list[list[bytes]]:
    """The commands of an append-only file (RESP arrays of bulk strings); a command still
    being written at the end is left out."""
    commands = []
    at = 0
    try:
        while at < len(data):
            end = data.index(b"\r\n", at)
            count, at = int(data[at + 1 : end]), end + 2
            args = []
            for _ in range(count):
                end = data.index(b"\r\n", at)
                length, at = int(data[at + 1 : end]), end + 2
                if at + length + 2 > len(data):
                    raise ValueError("incomplete")
                args.append(data[at : at + length])
                at += length + 2
            commands.append(args)
    except ValueError:
        pass
    return commands


def nagios_line(result: PassiveResult) -> str:
    """The arguments of the command our forwarder writes for `result`, as Nagios logs them
    (without trailing blanks)."""
    line = command_line(result, EngineReader.NAGIOS).decode().rstrip()
    return line.split("PROCESS_SERVICE_CHECK_RESULT;", 1)[1]
