"""The result queue while no consumer reads it for an hour, then the consumer's catch-up.

N checks every minute (default 10,000: 10,000 results a minute) push their results for
`--minutes` minutes with no consumer, in batches of 100 as workers do (shared/result_queue.py's
bounded push, on a real Redis: database 10, flushed before and after); one check in a hundred
changes state every ten minutes. It prints the queue's length and Redis's memory against an
unbounded queue, the cost of a push (and of those that compact), then how long one consumer
(command file to a plain file) takes to catch up, and what it forwarded.

Usage: python -m bench.result_backlog [--checks 10000] [--minutes 60]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import redis

from bench.servers import consumer_config
from smtp_checks.cli.consumer import ConsumerService
from smtp_checks.shared.config import ScheduledCheck
from smtp_checks.shared.keys import KEYS
from smtp_checks.shared.messages import CheckRequest, CheckResult, Handling
from smtp_checks.shared.probe.result import ProbeResult
from smtp_checks.shared.result_queue import ResultQueue, backlog_bound
from smtp_checks.workers.runner import with_status

REDIS_URL = "redis://127.0.0.1:6379/10"
BATCH = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checks", type=int, default=10_000)
    parser.add_argument("--minutes", type=int, default=60)
    args = parser.parse_args()
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    with tempfile.TemporaryDirectory() as directory:
        spool = Path(directory) / "engine.cmd"
        spool.touch()
        config = consumer_config(Path(directory), REDIS_URL, args.checks, spool)
        checks = config.scheduled_checks()
        bound = backlog_bound(len(checks))
        queue = ResultQueue(client, bound=bound)
        memory_before = int(client.info("memory")["used_memory"])
        start = time.time() - 60 * args.minutes
        pushes: list[float] = []
        compacting: list[float] = []
        longest = 0
        for minute in range(args.minutes):
            results = [
                with_status(_result(check, start + 60 * minute, slow=_slow(i, minute)))
                for i, check in enumerate(checks)
            ]
            for first in range(0, len(results), BATCH):
                began = time.perf_counter()
                dropped = queue.push(*results[first : first + BATCH])
                (compacting if dropped else pushes).append(time.perf_counter() - began)
            longest = max(longest, int(client.llen(queue.key)))
        pushed = args.minutes * len(checks)
        kept = int(client.llen(queue.key))
        list_bytes = int(client.memory_usage(queue.key) or 0)
        memory_after = int(client.info("memory")["used_memory"])
        counters = {k.decode(): int(v) for k, v in client.hgetall(KEYS.counters).items()}

        service = ConsumerService(config)
        caught_up = threading.Event()
        threading.Thread(target=_watch, args=(service, client, caught_up), daemon=True).start()
        began = time.perf_counter()
        service.run()
        catch_up = time.perf_counter() - began
        lines = spool.read_bytes().count(b"\n")
    client.flushdb()

    per_result = list_bytes / kept if kept else 0.0
    print(
        f"{len(checks):,} checks every 60 s, no consumer for {args.minutes} min: "
        f"{pushed:,} results pushed in batches of {BATCH}"
    )
    print(f"  bound (3 x checks + 1000)      {bound:>12,} results")
    print(f"  longest queue                  {longest:>12,} results")
    print(f"  left on the queue              {kept:>12,} results ({counters})")
    print(
        f"  results list in Redis          {list_bytes / 2**20:>12.1f} MB ({per_result:.0f} B a result)"
    )
    print(f"  unbounded, it would be         {pushed * per_result / 2**20:>12.1f} MB")
    print(
        f"  Redis used_memory growth       {(memory_after - memory_before) / 2**20:>12.1f} MB "
        f"({(memory_after - memory_before) / len(checks):.0f} B per configured check)"
    )
    print(
        f"  push of {BATCH}                    p50 {statistics.median(pushes) * 1000:6.2f} ms, "
        f"with compaction p50 {statistics.median(compacting or [0]) * 1000:6.1f} ms "
        f"max {max(compacting or [0]) * 1000:6.1f} ms ({len(compacting)} of "
        f"{len(pushes) + len(compacting)} pushes)"
    )
    print(
        f"  consumer catch-up              {catch_up:>12.1f} s for {kept:,} results "
        f"({kept / catch_up:,.0f}/s); {lines:,} lines forwarded "
        f"(every service's first state and each change)"
    )


def _slow(index: int, minute: int) -> bool:
    """One check in a hundred turns WARNING (and back) every ten minutes."""
    return index % 100 == 0 and (minute // 10) % 2 == 1


def _result(check: ScheduledCheck, at: float, *, slow: bool) -> CheckResult:
    request = CheckRequest.from_scheduled(check, scheduled_for=at, stale_at=at + 60)
    handling = Handling(worker="bench@host", received_at=at, queue_wait=0.0)
    return CheckResult.from_probe(request, handling, ProbeResult(time=2.5 if slow else 0.01), at)


def _watch(service: ConsumerService, client: redis.Redis, done: threading.Event) -> None:
    """Stop the consumer once the result queue and every outbox are empty."""

    def waiting() -> int:
        inflight = client.keys(KEYS.results_inflight("*"))
        return int(client.llen(KEYS.results)) + sum(int(client.llen(key)) for key in inflight)

    while waiting() or any(d.outbox.length() for d in service.deliverers):
        time.sleep(0.05)
    done.set()
    service.stop()


if __name__ == "__main__":
    main()
