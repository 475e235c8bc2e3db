"""How long a Redis Sentinel failover leaves Centreon without fresh results.

Each round starts a Sentinel group of its own (tests/sentinel.py: a master, a replica,
three sentinels with `down-after-milliseconds` 1000) and the whole system on it
(tests/e2e/pipeline.py: the beat, a worker per site, the consumer, Nagios 4), kills the
master after 0.6 s of writes its replica missed, and measures, as tests/e2e/test_failover.py
does: the time from the kill to the sentinels naming the replica, and to every service
fresh in Nagios again (a result checked after the promotion). The recovery is the
sentinels' detection and election (`down-after-milliseconds` plus about a second) plus
the roles' reconnection and the next check or refresh of each service: with Sentinel's
default down-after (30 s), add 29 s; with longer check intervals and resend_interval,
add up to the shorter of the two.

Usage: python -m bench.failover_recovery [--rounds N] [--hosts N] [--interval S]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from tests.e2e.pipeline import Pipeline, host
from tests.e2e.test_failover import fail_over
from tests.sentinel import SentinelGroup
from tests.smtp_servers import ServerPool


def one_round(directory: Path, pool: ServerPool, hosts: int, interval: int) -> tuple[float, float]:
    config = [
        host(f"{site}-{n}", site, pool.smtp().port, {"login": {}})
        for site in ("paris", "lyon")
        for n in range(hosts)
    ]
    with SentinelGroup() as group, Pipeline(
        directory, config, sentinel=group, interval=interval, timeout=1.0,
        resend_interval=max(3, 3 * interval), spool=True,
    ) as pipeline:  # fmt: skip
        pipeline.start()
        failover = fail_over(pipeline, group)
        return failover.promoted_after, failover.fresh_after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hosts", type=int, default=25, help="hosts per site (two sites)")
    parser.add_argument("--interval", type=int, default=2, help="seconds between checks")
    args = parser.parse_args()
    promoted, fresh = [], []
    pool = ServerPool()
    try:
        with tempfile.TemporaryDirectory() as directory:
            for number in range(args.rounds):
                took = one_round(Path(directory) / str(number), pool, args.hosts, args.interval)
                promoted.append(took[0])
                fresh.append(took[1])
                print(f"round {number + 1}: promoted {took[0]:.1f} s, all fresh {took[1]:.1f} s")
    finally:
        pool.close()
    print(
        f"{args.rounds} rounds, {2 * args.hosts} services every {args.interval} s: kill to "
        f"promotion median {statistics.median(promoted):.1f} s (max {max(promoted):.1f}), "
        f"kill to every service fresh median {statistics.median(fresh):.1f} s "
        f"(max {max(fresh):.1f})"
    )


if __name__ == "__main__":
    main()
