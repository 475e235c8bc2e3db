"""Results per second that one consumer renders, tracks and forwards to the command file,
and its CPU per result.

The result queue (Redis database 9, flushed before and after) is filled with N results
for N distinct services (so every one is a state change, the most expensive path: a Lua
decision, an outbox append and a command line each), then one ConsumerService runs until
the command file holds all N lines. Usage: python -m bench.consumer_throughput [--results N]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import redis

from bench.servers import consumer_config
from smtp_checks.cli.consumer import ConsumerService
from smtp_checks.shared.messages import CheckRequest, CheckResult, Handling
from smtp_checks.shared.probe.result import ProbeResult
from smtp_checks.shared.result_queue import ResultQueue

REDIS_URL = "redis://127.0.0.1:6379/9"


def _stop_when_done(service: ConsumerService, expected: int) -> None:
    """Stop the consumer once every result is recorded and every outbox is empty."""
    while service.processor.counts["change"] < expected or any(
        d.outbox.length() for d in service.deliverers
    ):
        time.sleep(0.05)
    service.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=int, default=20_000)
    args = parser.parse_args()
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    with tempfile.TemporaryDirectory() as directory:
        spool = Path(directory) / "engine.cmd"
        spool.touch()
        config = consumer_config(Path(directory), REDIS_URL, args.results, spool)
        now = time.time()
        queue = ResultQueue(client)
        pipe = client.pipeline(transaction=False)
        for check in config.scheduled_checks():
            request = CheckRequest.from_scheduled(check, scheduled_for=now, stale_at=now + 60)
            handling = Handling(worker="bench@host", received_at=now, queue_wait=0.0)
            result = CheckResult.from_probe(request, handling, ProbeResult(time=0.01), now)
            pipe.rpush(queue.key, result.model_dump_json())
        pipe.execute()
        service = ConsumerService(config)
        watcher = threading.Thread(
            target=_stop_when_done, args=(service, args.results), daemon=True
        )
        watcher.start()
        wall, cpu = time.perf_counter(), time.process_time()
        service.run()  # in this thread, so that a profiler sees it
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        lines = spool.read_bytes().count(b"\n")
    client.flushdb()
    assert lines == args.results, f"{lines} lines in the command file, expected {args.results}"
    print("results  seconds  results/s  cpu_ms/result")
    print(
        f"{args.results:7d}  {wall:7.2f}  {args.results / wall:9.0f}  {cpu / args.results * 1000:13.3f}"
    )


if __name__ == "__main__":
    main()
