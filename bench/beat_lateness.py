"""Beat lateness and CPU at 20,000 checks a minute, the worker side stubbed.

A real `smtp-checks beat` process schedules N login checks at one interval on a Redis
broker; a thread here drains the check queue as fast as messages arrive (BRPOP, an instant
"ack", and the run marked taken in the ledger as a worker marks it), and measures each run's lateness as the time it was taken minus the time it was
scheduled for, so the figure covers the beat and the queue. The beat first owes one run
per check (its start-up catch-up); the steady-state figures count only runs scheduled
after that burst was drained. The beat's CPU comes from /proc/<pid>/stat.

Usage: python -m bench.beat_lateness [--checks 20000] [--interval 60] [--duration 75]
Flushes Redis database --db (default 14) before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis
import redis.asyncio
import yaml

from smtp_checks.shared.ledger import WorkerLedger
from smtp_checks.shared.messages import CheckRequest

REDIS_BASE = os.environ.get("SMTP_CHECKS_TEST_REDIS", "redis://127.0.0.1:6379").rstrip("/")
QUEUE = "checks.bench"


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_config(directory: Path, broker_url: str, checks: int, interval: int) -> Path:
    settings = {
        "broker_url": broker_url,
        "defaults": {"interval": interval, "timeout": min(30, interval), "tls": "none"},
        "sites": {"bench": {}},
        "hosts": [
            {
                "name": f"mx{n}.example.com",
                "address": "192.0.2.1",
                "site": "bench",
                "checks": {"login": {}},
            }
            for n in range(checks)
        ],
    }
    path = directory / "bench.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


class Drain(threading.Thread):
    """Takes every message off the queue at once, marks its run taken in the ledger as a
    worker does (else the beat skips the check's next slots: its run is still pending), and
    notes (taken at, scheduled for, id)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.taken: list[tuple[float, float, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        asyncio.run(self._drain())

    async def _drain(self) -> None:
        client = redis.asyncio.Redis.from_url(self.url, socket_timeout=10)
        ledger = WorkerLedger(client)
        while not self.stop.is_set():
            reply = await client.brpop([QUEUE], timeout=1)
            if reply is None:
                continue
            now = time.time()
            envelope = json.loads(reply[1])
            request = CheckRequest.model_validate(
                json.loads(base64.b64decode(envelope["body"]))[0][0]
            )
            await ledger.take([request], worker="drain")
            self.taken.append((now, request.scheduled_for, request.check_id))
        await client.aclose()


def percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checks", type=int, default=20_000)
    parser.add_argument("--interval", type=int, default=60)
    parser.add_argument("--duration", type=float, default=75.0, help="seconds after catch-up")
    parser.add_argument("--db", type=int, default=14)
    args = parser.parse_args()
    url = f"{REDIS_BASE}/{args.db}"
    redis.Redis.from_url(url).flushdb()
    drain = Drain(url)
    drain.start()
    with tempfile.TemporaryDirectory() as directory:
        config = write_config(Path(directory), url, args.checks, args.interval)
        log = Path(directory) / "beat.log"
        launched = time.time()
        with log.open("wb") as output:
            beat = subprocess.Popen(
                [sys.executable, "-m", "smtp_checks.cli.main", "beat", "--config", str(config)],
                stderr=output,
            )
        try:
            # Catch-up: one run per check, whatever slot it is in.
            while len(drain.taken) < args.checks:
                if beat.poll() is not None:
                    raise SystemExit(f"the beat exited: {log.read_text()}")
                time.sleep(0.05)
            caught_up = time.time()
            cpu_start = cpu_seconds(beat.pid)
            time.sleep(args.duration)
            cpu_used = cpu_seconds(beat.pid) - cpu_start
            ended = time.time()
        finally:
            beat.send_signal(signal.SIGTERM)
            beat.wait(timeout=30)
        summaries = [line for line in log.read_text().splitlines() if "last minute" in line]
    drain.stop.set()
    drain.join()

    runs = drain.taken
    steady = [taken - scheduled for taken, scheduled, _ in runs if scheduled >= caught_up]
    steady.sort()
    pairs = [(check_id, round(scheduled, 3)) for _, scheduled, check_id in runs]
    window = ended - caught_up
    print(f"checks {args.checks} at {args.interval} s: {args.checks * 60 / args.interval:.0f}/min")
    print(
        f"catch-up: {args.checks} runs owed at start, drained {caught_up - launched:.1f} s "
        f"after launch (config load included)"
    )
    print(
        f"steady state: {len(steady)} runs in {window:.1f} s ({len(steady) / window * 60:.0f}/min)"
    )
    print(
        f"lateness (taken - scheduled): p50 {percentile(steady, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(steady, 0.99) * 1000:.1f} ms, max {steady[-1] * 1000:.1f} ms"
    )
    print(
        f"beat CPU: {cpu_used / window * 100:.1f}% of one core "
        f"({cpu_used:.2f} s over {window:.1f} s)"
    )
    print(f"duplicates (same check and slot twice): {len(pairs) - len(set(pairs))}")
    print(f"beat exit code: {beat.returncode}")
    for line in summaries:
        print(f"beat log: {line}")
    redis.Redis.from_url(url).flushdb()


if __name__ == "__main__":
    main()
