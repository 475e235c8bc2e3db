"""Worker throughput: login checks per second through Redis with ONE `smtp-checks worker`
process, beside the raw probe's rate (asyncio, in process) against the same servers.

Two aiosmtpd server processes (clear text), a few hundred configured hosts split across
them, target limits set high so they never refuse. For each concurrency value: Redis
database 10 is flushed, N requests are published to `checks.bench` before the worker starts,
then the worker is started and the clock runs from the first result to the last (counted
with LLEN of the results list, `smtp-checks:results`, not consumed). CPU figures come from
/proc (worker, servers) and Redis's INFO; `cpu %` is of one core (the machine has 2).

Usage: python -m bench.worker_throughput [--checks N] [--concurrency 50,200,500]
       [--loglevel INFO,WARNING] [--hosts 300]
Redis database 10 of 127.0.0.1:6379 is flushed before and after: do not point it at data.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from smtp_checks.shared.keys import KEYS
from smtp_checks.shared.messages import CheckRequest
from smtp_checks.shared.probe.asyncio_driver import run_probe
from smtp_checks.shared.probe.spec import ProbeSpec, TlsMode, TlsSettings
from tests.worker_harness import Deployment, publish

REDIS_BASE = "redis://127.0.0.1:6379"
BENCH_DB = 10
SITE = "bench"
_CLK_TCK = os.sysconf("SC_CLK_TCK")

# The server child: SmtpServer(**options) on a free port; prints its port, then answers
# "stats" / "reset" lines on stdin; stops when stdin closes (or on "quit").
_SERVE = """
import json, sys
from tests.smtp_servers import SmtpServer
server = SmtpServer(**json.loads(sys.argv[1])).start()
print(server.port, flush=True)
for line in sys.stdin:
    command = line.strip()
    if command == "reset":
        server.reset_stats()
        print("{}", flush=True)
    elif command == "stats":
        sessions = [[s.started, s.ended] for s in server.sessions]
        print(json.dumps({"max_active": server.max_concurrent_sessions, "sessions": sessions}),
              flush=True)
    elif command == "quit":
        break
server.stop()
"""


# --------------------------------------------------------------------------- processes


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of process `pid` (all its threads)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime (fields 14, 15)


def proc_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


@dataclass
class ServerChild:
    process: subprocess.Popen[str]
    port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    def command(self, line: str) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())


@contextmanager
def server_child(**options: object) -> Iterator[ServerChild]:
    """`tests.smtp_servers.SmtpServer(**options)` in a child process, stopped on exit."""
    with child_server([sys.executable, "-c", _SERVE, json.dumps(options)]) as child:
        yield child


@contextmanager
def child_server(argv: list[str]) -> Iterator[ServerChild]:
    """A server child that prints its port, then answers commands on stdin."""
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield ServerChild(process, int(process.stdout.readline()))
    finally:
        stop_process(process, stdin=True)


def stop_process(process: subprocess.Popen[Any], *, stdin: bool = False, wait: float = 20) -> None:
    if process.poll() is None:
        if stdin and process.stdin is not None:
            with suppress(OSError):
                process.stdin.close()
        else:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def worker_process(
    config: Path, *, concurrency: int, loglevel: str, log: Path, extra: tuple[str, ...] = ()
) -> Iterator[subprocess.Popen[bytes]]:
    """`smtp-checks worker` (as `python -m smtp_checks.cli.main`) for the bench site, with
    `extra` arguments."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "smtp_checks.cli.main", "worker", "--config", str(config),
                "--site", SITE, "--concurrency", str(concurrency), "--loglevel", loglevel,
                "--hostname", f"bench-c{concurrency}@bench", *extra,
            ],
            stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield process
    finally:
        stop_process(process)


@contextmanager
def flushed_db(db: int = BENCH_DB) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(f"{REDIS_BASE}/{db}")
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


# --------------------------------------------------------------------------- deployment


def write_config(directory: Path, ports: list[int], hosts: int, **check: Any) -> Deployment:
    settings = {
        "broker_url": f"{REDIS_BASE}/{BENCH_DB}",
        "sites": {SITE: {}},
        "defaults": {"tls": "none", "timeout": 30},
        # Limits are per address:port, so these hosts share len(ports) targets: set high.
        "target_limits": {"max_concurrent": 10000, "max_per_minute": 1000000},
        "hosts": [
            {
                "name": f"bench-{index:04d}",
                "address": "127.0.0.1",
                "port": ports[index % len(ports)],
                "site": SITE,
                "checks": {"login": dict(check)},
            }
            for index in range(hosts)
        ],
    }
    return Deployment.write(directory, settings)


def prefill(deployment: Deployment, count: int, rate: float = 0.0) -> float:
    """Publish `count` requests (round robin over the configured checks), at once or `rate`
    a second; returns seconds."""
    app = deployment.app()
    checks = deployment.config.scheduled_checks()
    started = time.perf_counter()
    for index in range(count):
        if rate:
            time.sleep(max(0.0, started + index / rate - time.perf_counter()))
        now = time.time()
        request = CheckRequest.from_scheduled(
            checks[index % len(checks)], scheduled_for=now, stale_at=now + 3600
        )
        publish(app, request)
    app.close()
    return time.perf_counter() - started


def results_key() -> str:
    """The Redis list workers push CheckResults to (shared/result_queue.py)."""
    return KEYS.results


def published(client: redis.Redis, key: str) -> int:
    """Results the worker published: on the list, or compacted away (the list is bounded by
    the configured checks, fewer than the checks queued here: shared/result_queue.py)."""
    compacted = client.hget(KEYS.counters, "results_compacted")
    return int(client.llen(key)) + int(compacted or 0)


def decode_results(client: redis.Redis) -> list[dict[str, Any]]:
    """Every CheckResult on the results list, oldest first (left in place)."""
    return [json.loads(raw) for raw in client.lrange(results_key(), 0, -1)]


# --------------------------------------------------------------------------- measurements


@dataclass
class Snapshot:
    at: float
    worker: float
    servers: float
    redis: float


def snapshot(worker_pid: int, servers: list[ServerChild], client: redis.Redis) -> Snapshot:
    return Snapshot(
        time.perf_counter(),
        proc_cpu(worker_pid),
        sum(proc_cpu(s.pid) for s in servers),
        redis_cpu(client),
    )


@dataclass
class Run:
    label: str
    concurrency: int
    checks: int
    startup: float  # worker start -> first result
    first: Snapshot
    last: Snapshot
    failures: int
    max_rss_mb: float

    @property
    def wall(self) -> float:
        return self.last.at - self.first.at

    @property
    def rate(self) -> float:
        return (self.checks - 1) / self.wall  # intervals between first and last result


def run_worker(
    deployment: Deployment,
    client: redis.Redis,
    servers: list[ServerChild],
    *,
    checks: int,
    concurrency: int,
    loglevel: str,
    log: Path,
    timeout: float,
    extra: tuple[str, ...] = (),
    label: str | None = None,
) -> Run:
    client.flushdb()
    prefill(deployment, checks)
    first: Snapshot | None = None
    max_rss = 0.0
    key = results_key()
    with worker_process(
        deployment.path, concurrency=concurrency, loglevel=loglevel, log=log, extra=extra
    ) as w:
        started = time.perf_counter()
        deadline = started + timeout
        next_rss = 0.0
        while True:
            done = published(client, key)
            if first is None and done:
                first = snapshot(w.pid, servers, client)
            if done >= checks:
                last = snapshot(w.pid, servers, client)
                break
            if w.poll() is not None:
                raise SystemExit(f"worker exited with {w.returncode}; see {log}")
            now = time.perf_counter()
            if now > deadline:
                raise SystemExit(f"only {done}/{checks} results after {timeout}s; see {log}")
            if now >= next_rss:
                max_rss, next_rss = max(max_rss, proc_rss_mb(w.pid)), now + 0.25
            time.sleep(0.005)
        max_rss = max(max_rss, proc_rss_mb(w.pid))
    assert first is not None
    results = decode_results(client)
    failures = sum(result["outcome"] != "success" for result in results)
    if failures:
        kinds = sorted({(r["outcome"], r.get("detail", "")[:80]) for r in results
                        if r["outcome"] != "success"})  # fmt: skip
        print(f"  ({failures} failures: {kinds[:3]})", file=sys.stderr)
    return Run(
        label or f"worker {loglevel}", concurrency, len(results), first.at - started, first, last,
        failures, max_rss,
    )  # fmt: skip


def raw_probe(
    ports: list[int], servers: list[ServerChild], client: redis.Redis, checks: int, in_flight: int
) -> tuple[float, float, float, int]:
    """(checks/s, cpu ms/check of this process, servers cpu %, failures), in process."""
    specs = [
        ProbeSpec(host="127.0.0.1", port=port, tls=TlsSettings(mode=TlsMode.NONE), timeout=30)
        for port in ports
    ]

    async def run(count: int) -> int:
        gate = asyncio.Semaphore(in_flight)
        failures = 0

        async def one(index: int) -> None:
            nonlocal failures
            async with gate:
                result = await run_probe(specs[index % len(specs)])
                failures += result.failure is not None

        await asyncio.gather(*(one(i) for i in range(count)))
        return failures

    asyncio.run(run(200))  # warm-up
    servers_cpu = sum(proc_cpu(s.pid) for s in servers)
    wall, cpu = time.perf_counter(), time.process_time()
    failures = asyncio.run(run(checks))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    servers_cpu = sum(proc_cpu(s.pid) for s in servers) - servers_cpu
    return checks / wall, cpu / checks * 1000, servers_cpu / wall * 100, failures


# --------------------------------------------------------------------------- main


HEADER = (
    "run                concurrency  checks  checks/s  % of raw  cpu_ms/check  worker_cpu%  "
    "servers_cpu%  redis_cpu%  max_rss_MB  startup_s  failures"
)


def print_run(run: Run, raw_rate: float) -> None:
    wall = run.wall
    print(
        f"{run.label:17s}  {run.concurrency:11d}  {run.checks:6d}  {run.rate:8.0f}  "
        f"{run.rate / raw_rate * 100:7.0f}%  "
        f"{(run.last.worker - run.first.worker) / (run.checks - 1) * 1000:12.3f}  "
        f"{(run.last.worker - run.first.worker) / wall * 100:11.0f}  "
        f"{(run.last.servers - run.first.servers) / wall * 100:12.0f}  "
        f"{(run.last.redis - run.first.redis) / wall * 100:10.0f}  "
        f"{run.max_rss_mb:10.0f}  {run.startup:9.1f}  {run.failures:8d}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )  # fmt: skip
    parser.add_argument("--checks", type=int, default=5000, help="requests per run (5000)")
    parser.add_argument(
        "--concurrency", default="50,200,500", help="worker --concurrency values (50,200,500)"
    )
    parser.add_argument(
        "--loglevel", default="INFO",
        help="worker --loglevel values, comma-separated (INFO: the default of the command)",
    )  # fmt: skip
    parser.add_argument(
        "--hosts", type=int, default=5000,
        help="configured hosts (5000: the result queue, bounded by them, keeps every result)",
    )  # fmt: skip
    parser.add_argument("--raw-in-flight", type=int, default=100, help="raw probe (100)")
    parser.add_argument("--timeout", type=float, default=300, help="per run, seconds (300)")
    args = parser.parse_args()
    concurrencies = [int(value) for value in args.concurrency.split(",")]
    loglevels = [value.strip().upper() for value in args.loglevel.split(",")]

    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-w-")))
        servers = [stack.enter_context(server_child(backlog=4096)) for _ in range(2)]
        ports = [server.port for server in servers]
        client = stack.enter_context(flushed_db())
        deployment = write_config(directory, ports, args.hosts)

        raw_rate, raw_cpu, raw_servers, raw_failures = raw_probe(
            ports, servers, client, args.checks, args.raw_in_flight
        )
        print(HEADER)
        print(
            f"{'raw probe':17s}  {args.raw_in_flight:11d}  {args.checks:6d}  {raw_rate:8.0f}  "
            f"{100:7.0f}%  {raw_cpu:12.3f}  {'(bench)':>11s}  {raw_servers:12.0f}  "
            f"{'-':>10s}  {'-':>10s}  {'-':>9s}  {raw_failures:8d}",
            flush=True,
        )
        for loglevel in loglevels:
            for concurrency in concurrencies:
                run = run_worker(
                    deployment, client, servers, checks=args.checks, concurrency=concurrency,
                    loglevel=loglevel, log=directory / f"worker-{loglevel}-{concurrency}.log",
                    timeout=args.timeout,
                )  # fmt: skip
                print_run(run, raw_rate)


if __name__ == "__main__":
    main()
