"""Results per second each Centreon API forwarder delivers when every request takes Centreon
`--delay` seconds (0.5 by default): batching must hide the latency.

An outbox in Redis (database 9, flushed before and after) is filled with N passive results
for N distinct services, then one delivery thread (the consumer's own, workers/delivery.py)
empties it into tests/centreon_api_fake.py, which answers every request after the delay and
applies results as Centreon's code does. Name lookups are made once per service before the
clock starts, as a running consumer has them cached.
Usage: python -m bench.forwarder_throughput [--results N] [--delay S]
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import redis

from smtp_checks.consumer.deliverer import BATCH_SIZE, Deliverer
from smtp_checks.consumer.forwarders.api_v1 import ApiV1Forwarder
from smtp_checks.consumer.forwarders.api_v2 import ApiV2Forwarder
from smtp_checks.consumer.forwarders.base import PassiveResult
from smtp_checks.consumer.forwarders.http_forwarder import MAX_BATCH, HttpForwarder
from smtp_checks.consumer.outbox import Outbox
from smtp_checks.shared.backoff import Backoff
from tests.centreon_api_fake import CentreonApiFake
from tests.passive_results import passive

REDIS_URL = "redis://127.0.0.1:6379/9"
PASSWORD = "bench-Secret1"


def results(count: int) -> list[PassiveResult]:
    return [
        passive(f"mx{n}", "SMTP-Login", n % 3, f"OK: Response time 0.{n % 1000:03d} second(s)",
                      f"'time'=0.{n % 1000:03d}s;;;;", time.time())
        for n in range(count)
    ]  # fmt: skip


def run(
    kind: str, count: int, delay: float, max_batch: int, client: redis.Redis
) -> tuple[float, int]:
    """Seconds to deliver `count` results through `kind`, and the requests it took."""
    client.flushdb()
    with CentreonApiFake(password=PASSWORD) as fake:
        for n in range(count):
            fake.set_known(f"mx{n}", "SMTP-Login", 10 + n, 100_000 + n)
        forwarder: HttpForwarder
        if kind == "api_v2":
            forwarder = ApiV2Forwarder(
                fake.url_v2, "api", PASSWORD, timeout=30, max_batch=max_batch
            )
        else:
            forwarder = ApiV1Forwarder(
                fake.url_v1, "api", PASSWORD, timeout=30, max_batch=max_batch
            )
        batch = results(count)
        forwarder.deliver(batch)  # warm: the login and, for v2, every id in the cache
        outbox = Outbox(client, kind, max_length=count * 2)
        client.rpush(outbox.key, *(_json(result) for result in batch))
        fake.delay = delay
        before = len(fake.requests)
        stop = threading.Event()
        delivery = Deliverer(outbox, forwarder, stop, backoff=Backoff())
        started = time.perf_counter()
        delivery.start()
        while outbox.length():
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        stop.set()
        delivery.wake()
        delivery.join(10)
        fake.delay = 0.0
        return elapsed, len(fake.requests) - before


def _json(result: PassiveResult) -> str:
    return json.dumps(result.as_json())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=int, default=10_000)
    parser.add_argument("--delay", type=float, default=0.5)
    parser.add_argument("--max-batch", type=int, default=MAX_BATCH, help="results per request")
    args = parser.parse_args()
    client = redis.Redis.from_url(REDIS_URL)
    print(f"{args.results} results, Centreon answering every request after {args.delay} s; "
          f"{args.max_batch} results per request, outbox batches of {BATCH_SIZE}")  # fmt: skip
    print(f"{'forwarder':<10}{'seconds':>9}{'requests':>10}{'results/s':>11}")
    try:
        for kind in ("api_v2", "api_v1"):
            elapsed, requests = run(kind, args.results, args.delay, args.max_batch, client)
            print(f"{kind:<10}{elapsed:>9.2f}{requests:>10}{args.results / elapsed:>11.0f}")
    finally:
        client.flushdb()


if __name__ == "__main__":
    main()
