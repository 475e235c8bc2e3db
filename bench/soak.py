"""Soak: the whole system on this machine, every role a real process, at 30,000 checks/min.

What runs (all children of this script, each in its own session so Ctrl-C reaches only us):
- a private `redis-server` on a free loopback port, its files in a temp dir (flushed, shut
  down and removed at the end), with keyspace events for strings turned on (see "counting");
- N aiosmtpd server processes (clear text), standing in for the configured hosts: host k
  targets server k mod N. Each forgets its session records every few seconds (the test
  server keeps one per session otherwise, which would look like a leak of the harness);
- one `smtp-checks beat`, one `smtp-checks worker --site S --concurrency C` per site
  (`a` and `b`, hosts alternate), one `smtp-checks consumer` whose `command_file`
  forwarder writes to a FIFO in the temp dir, drained by a reader thread here.

Counting (independent of the roles' own logs):
- enqueued runs: the beat claims each run with `SET smtp-checks:sched:<check>:<slot> NX`
  before recording and publishing it; every successful claim is a keyspace event;
- results: a worker pushes each result once to the list `smtp-checks:results`, several in
  one script call (a keyspace event per command, not per result), so they are counted off
  Redis's MONITOR stream: the values of every call of the bounded push to that list. Orphans: the consumer
  logs each one (`orphaned: ... run <id>`);
- lost = enqueued - results - orphans - superseded - still outstanding, after the beat is
  stopped and the pipeline drained (the ledger `smtp-checks:outstanding` empty). It must be
  0; a negative figure would mean runs with two outcomes (duplicates).
- lateness: results sampled off `smtp-checks:results` (LRANGE, not removed) five times a second:
  started_at - scheduled_for (the probe's start, after queue and permit waits).
- CPU: utime + stime from /proc/<pid>/stat of each role over the steady window (after the
  warm-up), divided by the results recorded in that window. Memory: VmRSS.
- `check_smtp` (Debian's monitoring-plugins-basic) is forked --check-smtp-runs times
  against one of the same servers, before the roles start; its CPU per check comes from
  os.wait4 (the child's own user + system time).

Usage: python -m bench.soak [--duration 600] [--warmup 30] [--hosts 2000] [--interval 4]
       [--timeout 3] [--servers 4] [--concurrency 300] [--check-smtp-runs 200]
--duration is the measured window after the warm-up; the drain at the end adds seconds
(up to interval + orphan grace when results are missing).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import hashlib
import json
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import yaml

from smtp_checks.shared.keys import KEYS
from smtp_checks.shared.result_queue import PUSH_BOUNDED

ROOT = Path(__file__).resolve().parent.parent
CHECK_SMTP = "/usr/lib/nagios/plugins/check_smtp"
SITES = ("a", "b")
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The server child: SmtpServer on a free port; forgets its session records every few
# seconds (keeping the count); prints the port, then the sessions so far for each "count"
# line on stdin; stops when stdin closes (or on SIGTERM).
_SERVE = """
import json, sys, threading
from tests.smtp_servers import SmtpServer
server = SmtpServer(**json.loads(sys.argv[1])).start()
state = server._state
total = [0]
def forget():
    while True:
        threading.Event().wait(5)
        with state.cond:
            total[0] += len(state.sessions)
            server.reset_stats()
threading.Thread(target=forget, daemon=True).start()
print(server.port, flush=True)
for line in sys.stdin:
    if line.strip() == "count":
        with state.cond:
            print(total[0] + len(state.sessions), flush=True)
server.stop()
"""


class Interrupted(Exception):
    pass


# --------------------------------------------------------------------------- /proc


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of `pid` and its live descendants (0 if gone)."""
    total = 0.0
    for each in [pid, *descendants(pid)]:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def proc_rss_mb(pid: int) -> float:
    total = 0.0
    for each in [pid, *descendants(pid)]:
        try:
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return total


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return found
    for child in map(int, children):
        found += [child, *descendants(child)]
    return found


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --------------------------------------------------------------------------- children


@dataclass
class Child:
    name: str
    process: subprocess.Popen[Any]
    log: Path | None = None
    kind: str = "role"  # role | redis | server
    port: int = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, wait: float = 30.0) -> int | None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                print(f"  {self.name} did not stop in {wait:.0f} s: SIGKILL", file=sys.stderr)
                self.process.kill()
                self.process.wait()
        return self.process.returncode


class Children:
    """Every process this soak started; `stop_all` stops the live ones in reverse order."""

    def __init__(self) -> None:
        self.all: list[Child] = []

    def start(self, name: str, argv: list[str], *, log: Path | None, kind: str = "role",
              stdout_pipe: bool = False) -> Child:  # fmt: skip
        output: Any = subprocess.PIPE if stdout_pipe else subprocess.DEVNULL
        handle = None
        if log is not None and not stdout_pipe:
            handle = log.open("wb")
            output = handle
        try:
            process = subprocess.Popen(
                argv, cwd=ROOT, stdin=subprocess.PIPE if stdout_pipe else subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT if handle else None,
                start_new_session=True, text=stdout_pipe,
            )  # fmt: skip
        finally:
            if handle is not None:
                handle.close()
        child = Child(name, process, log, kind)
        self.all.append(child)
        return child

    def stop_all(self) -> None:
        for child in reversed(self.all):
            child.stop(wait=20)


def smtp_checks_argv() -> list[str]:
    script = Path(sys.executable).parent / "smtp-checks"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "smtp_checks.cli.main"]


# --------------------------------------------------------------------------- observers


class KeyEvents(threading.Thread):
    """Counts the claims that mark a run enqueued (`SET` of its slot key)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True, name="key-events")
        self.client = redis.Redis.from_url(url)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe("__keyevent@0__:set")
        self.enqueued: list[float] = []
        self.stop_event = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        sched = KEYS.slots.encode()
        try:
            while not self.stop_event.is_set():
                message = self.pubsub.get_message(timeout=0.5)
                while message is not None:
                    if message["data"].startswith(sched):
                        self.enqueued.append(time.time())
                    message = self.pubsub.get_message(timeout=0)
        except BaseException as error:
            self.error = error
        finally:
            with contextlib.suppress(Exception):
                self.pubsub.close()


# One argument of a MONITOR line: Redis quotes each and escapes `"` and `\` inside.
_MONITOR_ARGUMENT = re.compile(rb'"(?:[^"\\]|\\.)*"')


class ResultPushes(threading.Thread):
    """Counts the results pushed to the result queue, off Redis's MONITOR stream: workers
    push through one script (shared/result_queue.py's PUSH_BOUNDED), and each
    `EVALSHA <sha> 2 smtp-checks:results smtp-checks:counters <bound> v1 v2 ...` adds one
    timestamp per value."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True, name="result-pushes")
        self.client = redis.Redis.from_url(url)
        self.recorded: list[float] = []
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        sha = hashlib.sha1(PUSH_BOUNDED.encode()).hexdigest()
        self._pushes = [
            f'"{verb}" "{sha}" "2" "{KEYS.results}" "{KEYS.counters}" '.encode()
            for verb in ("EVALSHA", "evalsha")
        ]
        self._connection = self.client.connection_pool.get_connection()
        self._connection.send_command("MONITOR")
        if self._connection.read_response() not in (b"OK", "OK"):
            raise RuntimeError("Redis refused MONITOR")

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                if not self._connection.can_read(timeout=0.5):
                    continue
                line = self._connection.read_response(disable_decoding=True)
                if not isinstance(line, bytes):
                    continue
                start = max(line.find(push) for push in self._pushes)
                if start >= 0:  # the arguments before the values: verb, sha, 2, keys, bound
                    values = len(_MONITOR_ARGUMENT.findall(line, start)) - 6
                    self.recorded.extend([time.time()] * values)
        except BaseException as error:
            self.error = error
        finally:
            with contextlib.suppress(Exception):
                self._connection.disconnect()


@dataclass
class Sample:
    scheduled_for: float
    started_at: float | None
    received_at: float
    ended_at: float
    outcome: str
    site: str
    worker: str


class ResultSampler(threading.Thread):
    """Reads the results list without taking from it, 5 times a second; one sample per run."""

    def __init__(self, url: str, limit: int = 1000) -> None:
        super().__init__(daemon=True, name="result-sampler")
        self.client = redis.Redis.from_url(url)
        self.limit = limit
        self.samples: dict[str, Sample] = {}
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(0.2):
            try:
                raw = self.client.lrange(KEYS.results, 0, self.limit - 1)
            except redis.RedisError:
                continue
            for item in raw:
                result = json.loads(item)
                identity = result["identity"]
                if identity["run_id"] in self.samples:
                    continue
                self.samples[identity["run_id"]] = Sample(
                    identity["scheduled_for"], result.get("started_at"), result["received_at"],
                    result["ended_at"], result["outcome"], identity["site"], result["worker"],
                )  # fmt: skip


class FifoReader(threading.Thread):
    """The Engine's side of the command file: reads and counts lines, keeps the last few."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True, name="fifo-reader")
        os.mkfifo(path, 0o600)
        # O_RDWR: the FIFO always has a reader and never reports EOF between writers.
        self.fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        self.lines = 0
        self.last: list[bytes] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        pending = b""
        while not self.stop_event.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.5)
            if not ready:
                continue
            with contextlib.suppress(BlockingIOError):
                pending += os.read(self.fd, 1 << 16)
            *complete, pending = pending.split(b"\n")
            self.lines += len(complete)
            self.last = (self.last + complete)[-3:]

    def close(self) -> None:
        self.stop_event.set()
        self.join(timeout=5)
        with contextlib.suppress(OSError):
            os.close(self.fd)


# --------------------------------------------------------------------------- set-up


def write_config(path: Path, args: argparse.Namespace, broker: str, ports: list[int],
                 fifo: Path) -> None:  # fmt: skip
    settings = {
        "broker_url": broker,
        "defaults": {"interval": args.interval, "timeout": args.timeout, "tls": "none"},
        "sites": {site: {} for site in SITES},
        # Per address:port, and every host here shares one of len(ports) servers.
        "target_limits": {"max_concurrent": 100_000, "max_per_minute": 1_000_000},
        "hosts": [
            {
                "name": f"soak-{index:05d}",
                "address": "127.0.0.1",
                "port": ports[index % len(ports)],
                "site": SITES[index % len(SITES)],
                "checks": {"login": {}},
            }
            for index in range(args.hosts)
        ],
        "centreon": {"forwarders": [{"type": "command_file", "path": str(fifo)}]},
    }
    path.write_text(yaml.safe_dump(settings, sort_keys=False))


def start_redis(children: Children, directory: Path) -> tuple[Child, str]:
    port = free_port()
    child = children.start(
        "redis",
        [
            shutil.which("redis-server") or "redis-server", "--port", str(port),
            "--bind", "127.0.0.1", "--dir", str(directory), "--save", "", "--appendonly", "no",
            "--maxmemory-policy", "noeviction", "--notify-keyspace-events", "E$",
            "--client-output-buffer-limit", "pubsub 0 0 0",
            "--logfile", str(directory / "redis.log"),
        ],
        log=None, kind="redis",
    )  # fmt: skip
    child.port = port
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    deadline = time.monotonic() + 10
    while True:
        if not child.alive():
            raise SystemExit(f"redis-server exited: {(directory / 'redis.log').read_text()}")
        try:
            client.ping()
            break
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise SystemExit("redis-server did not answer within 10 s") from None
            time.sleep(0.05)
    client.close()
    return child, url


def server_sessions(child: Child) -> int:
    """SMTP sessions the server child has served so far (-1 if it cannot say)."""
    assert child.process.stdin is not None and child.process.stdout is not None
    try:
        child.process.stdin.write("count\n")
        child.process.stdin.flush()
        return int(child.process.stdout.readline())
    except (OSError, ValueError):
        return -1


def start_server(children: Children, index: int) -> tuple[Child, int]:
    child = children.start(
        f"smtp server {index}",
        [sys.executable, "-c", _SERVE, json.dumps({"backlog": 4096})],
        log=None, kind="server", stdout_pipe=True,
    )  # fmt: skip
    assert child.process.stdout is not None
    line = child.process.stdout.readline()
    if not line.strip():
        raise SystemExit(f"SMTP server {index} did not start")
    return child, int(line)


# --------------------------------------------------------------------------- check_smtp


def measure_check_smtp(port: int, runs: int) -> dict[str, float] | None:
    """Fork `check_smtp` `runs` times, one after the other; its CPU and wall per check."""
    if not os.access(CHECK_SMTP, os.X_OK):
        return None
    argv = [CHECK_SMTP, "-H", "127.0.0.1", "-p", str(port), "-t", "10"]
    devnull = os.open(os.devnull, os.O_WRONLY)
    cpu: list[float] = []
    wall: list[float] = []
    failures = 0
    try:
        for _ in range(runs):
            started = time.perf_counter()
            pid = os.posix_spawn(
                CHECK_SMTP, argv, os.environ,
                file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)],
            )  # fmt: skip
            _, status, usage = os.wait4(pid, 0)
            wall.append(time.perf_counter() - started)
            cpu.append(usage.ru_utime + usage.ru_stime)
            failures += os.waitstatus_to_exitcode(status) != 0
    finally:
        os.close(devnull)
    return {
        "runs": runs,
        "cpu_ms": statistics.fmean(cpu) * 1000,
        "wall_p50_ms": statistics.median(wall) * 1000,
        "failures": failures,
    }


# --------------------------------------------------------------------------- helpers


def percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else float("nan")


def count_between(times: list[float], start: float, end: float) -> int:
    return sum(1 for t in times if start <= t < end)


def wait_until(predicate: Any, timeout: float, step: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def sleep_watching(seconds: float, roles: list[Child], label: str, *, notes: bool = True) -> None:
    """Sleep, failing early if a role died; a progress line every 30 s."""
    deadline = time.monotonic() + seconds
    next_note = time.monotonic() + 30
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 1.0))
        for child in roles:
            if not child.alive():
                log = child.log.read_text()[-3000:] if child.log else ""
                raise SystemExit(f"{child.name} exited ({child.process.returncode}):\n{log}")
        if notes and time.monotonic() >= next_note:
            next_note += 30
            print(f"  ... {label}: {seconds - max(left, 0):.0f} of {seconds:.0f} s", flush=True)


# --------------------------------------------------------------------------- the soak


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)

    def add(self, text: str = "") -> None:
        self.lines.append(text)


def soak(args: argparse.Namespace, directory: Path, children: Children) -> Report:
    report = Report()
    rate = args.hosts * 60 / args.interval
    print(f"temp dir {directory}", flush=True)

    redis_child, url = start_redis(children, directory)
    client = redis.Redis.from_url(url)
    server_version = client.info("server")["redis_version"]
    servers = [start_server(children, index + 1) for index in range(args.servers)]
    ports = [port for _, port in servers]
    print(f"redis on {url}, SMTP servers on ports {ports}", flush=True)

    print(f"check_smtp: {args.check_smtp_runs} forks against port {ports[0]}", flush=True)
    plugin = measure_check_smtp(ports[0], args.check_smtp_runs)

    fifo = directory / "centengine.cmd"
    reader = FifoReader(fifo)
    reader.start()
    config = directory / "soak.yaml"
    write_config(config, args, url, ports, fifo)
    events = KeyEvents(url)
    events.start()
    pushes = ResultPushes(url)
    pushes.start()
    sampler = ResultSampler(url)
    sampler.start()

    cli = smtp_checks_argv()
    conf = ["--config", str(config)]
    consumer = children.start("consumer", [*cli, "consumer", *conf], log=directory / "consumer.log")
    workers = [
        children.start(
            f"worker {site}",
            [
                *cli,
                "worker",
                *conf,
                "--site",
                site,
                "--concurrency",
                str(args.concurrency),
                "--hostname",
                f"soak-{site}@%h",
            ],
            log=directory / f"worker-{site}.log",
        )
        for site in SITES
    ]
    time.sleep(2.0)  # let the workers and the consumer connect before the catch-up burst
    beat = children.start("beat", [*cli, "beat", *conf], log=directory / "beat.log")
    launched = time.time()
    roles = [beat, *workers, consumer]
    measured = [*roles, redis_child]
    print(
        f"{args.hosts} hosts (sites a, b) at {args.interval} s, timeout {args.timeout:g} s: "
        f"{rate:,.0f} checks/min; warm-up {args.warmup:g} s, then {args.duration:g} s",
        flush=True,
    )

    sleep_watching(args.warmup, roles, "warm-up")
    t0 = time.time()
    cpu0 = {c.name: proc_cpu(c.pid) for c in measured + [s for s, _ in servers]}
    self_cpu0 = sum(os.times()[:2])
    busy0 = machine_busy()
    rss: dict[str, list[float]] = {c.name: [proc_rss_mb(c.pid)] for c in measured}
    rss_servers0 = sum(proc_rss_mb(s.pid) for s, _ in servers)
    sessions0 = sum(server_sessions(s) for s, _ in servers)
    step = max(args.duration / 10, 1.0)
    elapsed = 0.0
    while elapsed < args.duration:
        chunk = min(step, args.duration - elapsed)
        sleep_watching(chunk, roles, "steady window", notes=False)
        elapsed += chunk
        for c in measured:
            rss[c.name].append(proc_rss_mb(c.pid))
        print(f"  ... steady window: {elapsed:.0f} of {args.duration:g} s, "
              f"{len(pushes.recorded):,} results recorded so far", flush=True)  # fmt: skip
    t1 = time.time()
    cpu1 = {c.name: proc_cpu(c.pid) for c in measured + [s for s, _ in servers]}
    self_cpu1 = sum(os.times()[:2])
    busy1 = machine_busy()
    rss_servers1 = sum(proc_rss_mb(s.pid) for s, _ in servers)
    sessions1 = sum(server_sessions(s) for s, _ in servers)
    window = t1 - t0

    # ---- drain: no new runs; wait for every enqueued run to be settled or orphaned
    print("stopping the beat, draining ...", flush=True)
    beat_code = beat.stop()
    beat_stopped = time.time()
    ledger_key = KEYS.outstanding
    drain_limit = args.interval + 30 + 20  # stale time + the default orphan grace + margin
    drained = wait_until(lambda: client.zcard(ledger_key) == 0, drain_limit)
    drain_seconds = time.time() - beat_stopped
    outstanding_left = int(client.zcard(ledger_key))
    counters = {k.decode(): int(v) for k, v in client.hgetall(KEYS.counters).items()}
    superseded = counters.get("superseded", 0)
    worker_codes = [w.stop() for w in workers]
    wait_until(lambda: client.llen(KEYS.results) == 0, 15)
    outbox = KEYS.outbox(f"command_file:{fifo}")
    wait_until(lambda: client.llen(outbox) == 0, 15)
    time.sleep(1.0)  # the last keyspace events and FIFO lines
    consumer_code = consumer.stop()
    results_left = int(client.llen(KEYS.results))
    outbox_left = int(client.llen(outbox))
    events.stop_event.set()
    pushes.stop_event.set()
    sampler.stop_event.set()
    events.join(timeout=5)
    pushes.join(timeout=5)
    sampler.join(timeout=5)
    reader.close()

    enqueued_total = len(events.enqueued)
    results_total = len(pushes.recorded)
    sessions = sum(server_sessions(server) for server, _ in servers)
    for server, _ in servers:
        server.stop()

    # ---- figures
    recorded_w = count_between(pushes.recorded, t0, t1)
    enqueued_w = count_between(events.enqueued, t0, t1)
    role_cpu = {name: cpu1[name] - cpu0[name] for name in cpu0}
    system_names = [c.name for c in measured]
    server_names = [s.name for s, _ in servers]
    system_cpu = sum(role_cpu[n] for n in system_names)
    server_cpu = sum(role_cpu[n] for n in server_names)
    machine = (busy1[0] - busy0[0]) / max(busy1[1] - busy0[1], 1) * os.cpu_count()  # type: ignore[operator]
    per_check = lambda seconds: seconds / recorded_w * 1000 if recorded_w else float("nan")  # noqa: E731
    ran_w = sessions1 - sessions0  # checks that reached a server in the window
    per_run = lambda seconds: seconds / ran_w * 1000 if ran_w > 0 else float("nan")  # noqa: E731

    steady = [s for s in sampler.samples.values() if t0 <= s.scheduled_for < t1]
    ran = sorted(s.started_at - s.scheduled_for for s in steady if s.started_at is not None)
    taken = sorted(s.received_at - s.scheduled_for for s in steady)
    outcomes: dict[str, int] = {}
    for s in steady:
        outcomes[s.outcome] = outcomes.get(s.outcome, 0) + 1
    misrouted = sum(
        1 for s in sampler.samples.values() if not s.worker.startswith(f"soak-{s.site}@")
    )

    consumer_log = consumer.log.read_text() if consumer.log else ""
    stopped = re.findall(r"stopped: (\{.*\})", consumer_log)
    beat_log = beat.log.read_text() if beat.log else ""
    beat_minutes = [line.split("last minute: ", 1)[1] for line in beat_log.splitlines()
                    if "last minute: " in line]  # fmt: skip
    problems: dict[str, int] = {}
    for child in roles:
        for line in (child.log.read_text() if child.log else "").splitlines():
            if re.search(r" (ERROR|CRITICAL|WARNING) ", line) and "orphaned: " not in line:
                kind = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}|\d+(\.\d+)?", "N", line[24:])
                problems[f"{child.name}: {kind[:150]}"] = (
                    problems.get(f"{child.name}: {kind[:150]}", 0) + 1
                )
    # Orphans by when their run was scheduled: the beat's start-up catch-up, or later.
    orphan_scheduled: list[float] = []
    for match in re.finditer(
        r"^(\S+ \S+),(\d+) WARNING smtp_checks.consumer: orphaned: .* after (\d+) s$",
        consumer_log,
        re.M,
    ):
        logged = time.mktime(time.strptime(match[1], "%Y-%m-%d %H:%M:%S")) + int(match[2]) / 1000
        orphan_scheduled.append(logged - int(match[3]))
    catch_up_orphans = sum(1 for t in orphan_scheduled if t < launched + 1.5)
    orphans_w = sum(1 for t in orphan_scheduled if t0 <= t < t1)
    lost = enqueued_total - results_total - len(orphan_scheduled) - outstanding_left - superseded

    add = report.add
    add("=" * 78)
    add(f"SOAK  {args.hosts} hosts x login every {args.interval} s (timeout {args.timeout:g} s) "
        f"= {rate:,.0f} checks/min over {args.servers} aiosmtpd servers")  # fmt: skip
    add(
        f"      sites a, b (one worker each, --concurrency {args.concurrency}), 1 beat, "
        f"1 consumer -> command file (FIFO), own redis-server {server_version}"
    )
    add(f"      steady window {window:.1f} s after a {args.warmup:g} s warm-up "
        f"(beat launched {t0 - launched:.1f} s before the window)")  # fmt: skip
    add(
        f"      machine: {os.cpu_count()} cores busy {machine * 100 / os.cpu_count():.0f}% "  # type: ignore[operator]
        f"on average in the window ({machine:.2f} cores)"
    )
    add("")
    add("THROUGHPUT (steady window)")
    add(f"  runs enqueued by the beat        {enqueued_w:>9,}  {enqueued_w / window:8.1f}/s  "
        f"({enqueued_w / window * 60:,.0f}/min; target {rate:,.0f}/min)")  # fmt: skip
    add(f"  results published by the workers {recorded_w:>9,}  {recorded_w / window:8.1f}/s  "
        f"({recorded_w / window * 60:,.0f}/min)")  # fmt: skip
    add(
        f"  checks that reached a server     {ran_w:>9,}  {ran_w / window:8.1f}/s  "
        f"({ran_w / window * 60:,.0f}/min; the rest were throttled or superseded)"
    )
    add(
        f"  orphans reported                 {orphans_w:>9,}  (whole run: {len(orphan_scheduled)}, of "
        f"which {catch_up_orphans} for runs scheduled before the beat's start-up catch-up)"
    )
    add("")
    add(f"LATENESS (sampled results scheduled in the window: {len(steady):,} of {recorded_w:,})")
    if ran:
        add(f"  started - scheduled  p50 {percentile(ran, .5) * 1000:7.1f} ms   "
            f"p99 {percentile(ran, .99) * 1000:7.1f} ms   max {ran[-1] * 1000:7.1f} ms")  # fmt: skip
        add(f"  taken   - scheduled  p50 {percentile(taken, .5) * 1000:7.1f} ms   "
            f"p99 {percentile(taken, .99) * 1000:7.1f} ms   max {taken[-1] * 1000:7.1f} ms")  # fmt: skip
        buckets = 5
        parts = []
        for b in range(buckets):
            lo, hi = t0 + window * b / buckets, t0 + window * (b + 1) / buckets
            part = sorted(s.started_at - s.scheduled_for for s in steady
                          if s.started_at is not None and lo <= s.scheduled_for < hi)  # fmt: skip
            parts.append(f"{percentile(part, 0.99) * 1000:.0f}")
        add(f"  p99 by fifth of the window (ms): {', '.join(parts)}")
    add(f"  outcomes: {', '.join(f'{k} {v:,}' for k, v in sorted(outcomes.items()))}; "
        f"results run by a worker of another site: {misrouted}")  # fmt: skip
    add("")
    add("NOTHING LOST (whole run: catch-up, window and drain)")
    add(f"  runs enqueued (claimed slots)     {enqueued_total:>9,}")
    add(f"  results published                 {results_total:>9,}")
    add(f"  runs reported as orphans          {len(orphan_scheduled):>9,}")
    add(f"  runs superseded (dropped unrun)   {superseded:>9,}")
    add(
        f"  still outstanding after drain     {outstanding_left:>9,}  "
        f"(drain {drain_seconds:.1f} s{'' if drained else ', GAVE UP'})"
    )
    add(f"  LOST                              {lost:>9,}")
    add(
        f"  results left on the queue {results_left}, in the outbox {outbox_left}; "
        f"command-file lines read {reader.lines:,}; server sessions {sessions:,}"
    )
    add(f"  slots skipped (previous run still queued) {counters.get('skipped_slots', 0):,}; "
        f"results compacted {counters.get('results_compacted', 0):,}")  # fmt: skip
    if stopped:
        add(f"  consumer counters at SIGTERM: {stopped[-1]}")
        old = ast.literal_eval(stopped[-1]).get("old", 0)
        add(f"  real results dropped as old       {old:>9,}")
    add("")
    add("MEMORY (VmRSS MB)      at window start    at end    growth   max in window")
    for c in measured:
        values = rss[c.name]
        add(f"  {c.name:18s} {values[0]:14.1f} {values[-1]:9.1f} {values[-1] - values[0]:+9.1f} "
            f"{max(values):14.1f}")  # fmt: skip
    add(f"  {'SMTP servers (all)':18s} {rss_servers0:14.1f} {rss_servers1:9.1f} "
        f"{rss_servers1 - rss_servers0:+9.1f}")  # fmt: skip
    add("")
    add(f"CPU over the window: per result recorded ({recorded_w:,}) and per check run ({ran_w:,})")
    add(
        f"  {'role':22s} {'cpu s':>8s} {'% of a core':>12s} {'ms/result':>9s} {'ms/check run':>12s}"
    )
    rows = [(name, role_cpu[name], "") for name in [*system_names, *server_names]]
    rows += [
        ("smtp-checks + redis", system_cpu, "   <- end to end"),
        ("aiosmtpd servers", server_cpu, "   (the targets, not ours)"),
    ]
    for name, seconds, note in rows:
        add(
            f"  {name:22s} {seconds:8.2f} {seconds / window * 100:12.1f} "
            f"{per_check(seconds):9.3f} {per_run(seconds):12.3f}{note}"
        )
    soak_cpu = self_cpu1 - self_cpu0
    add(f"  {'this script (observer)':22s} {soak_cpu:8.2f} {soak_cpu / window * 100:12.1f}")
    others = machine * window - system_cpu - server_cpu - soak_cpu
    add(
        f"  {'rest of the machine':22s} {others:8.2f} {others / window * 100:12.1f}   "
        "(other processes; kernel work not charged to a process)"
    )
    add("")
    add("CHECK_SMTP forked once per check (same servers, before the roles started)")
    if plugin is None:
        add(f"  {CHECK_SMTP} not installed (apt-get install monitoring-plugins-basic)")
    else:
        ours = per_run(system_cpu)
        add(f"  {plugin['runs']:.0f} runs: cpu {plugin['cpu_ms']:.3f} ms/check (child user+sys), "
            f"wall p50 {plugin['wall_p50_ms']:.1f} ms, failures {plugin['failures']:.0f}")  # fmt: skip
        add(
            f"  {'for ' + f'{rate:,.0f}' + ' checks/min':22s} {'cpu cores':>10s} {'ms/check':>9s}"
            "   (ms per check that reached a server)"
        )
        add(
            f"  {'check_smtp forks':22s} {plugin['cpu_ms'] * rate / 60 / 1000:10.3f} "
            f"{plugin['cpu_ms']:9.3f}   (plugin process only: Engine's fork/exec/reap not counted)"
        )
        add(
            f"  {'smtp-checks + redis':22s} {ours * rate / 60 / 1000:10.3f} {ours:9.3f}   "
            f"(measured: {system_cpu / window:.3f} cores for {ran_w / window * 60:,.0f} checks run/min)"
        )
    add("")
    add(f"exit codes: beat {beat_code}, workers {worker_codes}, consumer {consumer_code}")
    for line in beat_minutes:
        add(f"beat: {line}")
    if events.error is not None:
        add(f"PROBLEM: the keyspace event listener failed: {events.error!r}")
    if pushes.error is not None:
        add(f"PROBLEM: the MONITOR listener failed: {pushes.error!r}")
    if problems:
        add(f"role log warnings/errors other than orphans ({sum(problems.values())}), by kind:")
        for kind, count in sorted(problems.items(), key=lambda item: -item[1])[:10]:
            add(f"  {count:6d} x {kind}")
    add("=" * 78)
    client.close()
    return report


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description="Soak the whole system (redis, aiosmtpd servers, beat, a worker per site, "
        "consumer, all real processes) at 30,000 checks/min and report throughput, lateness, "
        "lost results, memory and CPU per check, beside check_smtp forked per check.",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=600.0,
        help="seconds of the measured window, after the warm-up (default 600)",
    )
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds (default 30)")
    parser.add_argument("--hosts", type=int, default=2000, help="configured hosts (default 2000)")
    parser.add_argument("--interval", type=int, default=4, help="seconds between runs (default 4)")
    parser.add_argument("--timeout", type=float, default=3.0, help="check timeout (default 3)")
    parser.add_argument("--servers", type=int, default=4, help="aiosmtpd processes (default 4)")
    parser.add_argument(
        "--concurrency", type=int, default=300, help="--concurrency of each worker (default 300)"
    )
    parser.add_argument(
        "--check-smtp-runs",
        type=int,
        default=200,
        help="check_smtp forks for the comparison (default 200)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the temp dir (config, role logs) and print its path",
    )
    args = parser.parse_args()  # fmt: skip

    def interrupted(signum: int, frame: object) -> None:
        raise Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    directory = Path(tempfile.mkdtemp(prefix="smtp-soak-"))
    children = Children()
    code = 0
    try:
        report = soak(args, directory, children)
        print("\n".join(report.lines), flush=True)
    except Interrupted as why:
        print(f"\ninterrupted ({why}): stopping every child", file=sys.stderr)
        code = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # teardown must not be interrupted
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        redis_children = [c for c in children.all if c.kind == "redis" and c.alive()]
        children.all = [c for c in children.all if c.kind != "redis"]
        children.stop_all()
        for child in redis_children:
            with contextlib.suppress(redis.RedisError):
                flush = redis.Redis(host="127.0.0.1", port=child.port, socket_timeout=5)
                flush.flushall()
            child.stop(wait=10)
        if args.keep:
            print(f"kept {directory}", file=sys.stderr)
        else:
            shutil.rmtree(directory, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
