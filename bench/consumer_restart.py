"""How soon a consumer killed with -9 during a delivery and started again delivers again.

A real consumer process (tests/e2e/pipeline.py's, its own redis-server) forwards to
tests/centreon_api_fake.py, which takes `--delay` seconds over every request. A wave of state
changes goes out; while Centreon is busy with it, the consumer is killed with -9 and started
again at once. The figure is the time from the restart to the next result Centreon applies
(the dead consumer's outbox and in-flight results taken over), against the 20 s a lease
would take to expire. Usage: python -m bench.consumer_restart [--rounds N] [--delay S]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from smtp_checks.consumer.deliverer import LEASE_TTL
from tests.centreon_api_fake import CentreonApiFake
from tests.e2e.pipeline import Pipeline, host, wait_until
from tests.e2e.test_centreon_delivery import api_forwarder, wave
from tests.smtp_servers import refused_port

HOSTS = 30
PASSWORD = "bench-Secret1"


def one_round(pipeline: Pipeline, fake: CentreonApiFake, number: int, delay: float) -> float:
    fake.delay = delay
    submits = len(fake.calls("POST", "/monitoring/resources/submit"))
    wave(pipeline, number)
    wait_until(
        lambda: len(fake.calls("POST", "/monitoring/resources/submit")) > submits,
        30, "a submit in flight", every=0.01,
    )  # fmt: skip
    pipeline.kill("consumer")
    applied = len(fake.submits_v2)
    restarted = time.monotonic()
    pipeline.start_role("consumer")
    wait_until(lambda: len(fake.submits_v2) > applied + HOSTS, 60, "delivering again", every=0.01)
    return time.monotonic() - restarted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--delay", type=float, default=0.5)
    args = parser.parse_args()
    os.environ["BENCH_CENTREON_PASSWORD"] = PASSWORD
    with CentreonApiFake(password=PASSWORD) as fake, tempfile.TemporaryDirectory() as directory:
        for n in range(HOSTS):
            fake.set_known(f"h{n}", "SMTP-Login", 100 + n, 1000 + n)
        forwarder = {**api_forwarder("api_v2", fake), "password": "env:BENCH_CENTREON_PASSWORD"}
        hosts = [host(f"h{n}", "paris", refused_port(), {"login": {}}) for n in range(HOSTS)]
        with Pipeline(
            Path(directory), hosts, resend_interval=3600, forwarders=[forwarder]
        ) as pipeline:
            pipeline.start(roles=["consumer"])
            wave(pipeline, 0)
            wait_until(lambda: len(fake.submits_v2) >= HOSTS, 30, "the first wave")
            times = [one_round(pipeline, fake, n, args.delay) for n in range(1, args.rounds + 1)]
    print(f"consumer killed with -9 mid-delivery ({args.delay} s per request), started again:")
    print(f"  time from the restart to Centreon applying again: median {statistics.median(times):.2f} s, "
          f"max {max(times):.2f} s over {len(times)} rounds (a lease expiry would be {LEASE_TTL:.0f} s)")  # fmt: skip
    print("  (includes the consumer's own start-up: Python, imports, config, the first request)")


if __name__ == "__main__":
    main()
