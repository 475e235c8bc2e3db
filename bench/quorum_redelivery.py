"""How soon RabbitMQ gives a killed worker's checks to another: classic against quorum queues.

Each round, on the local RabbitMQ (a queue of its own, `broker_queue_type` classic or
quorum, rounds alternating) and a redis-server of its own for the state: two real
`smtp-checks worker` processes of one site, 20 checks of a server that takes 1 s to greet
put on the queue, and once all 20 are in flight, one worker SIGKILLed. The figure is the
time from the kill to the last of the 20 results (the dead worker's checks run again by the
other: at least the server's 1 s), and how many were redelivered.

Usage: python -m bench.quorum_redelivery [--rounds N]   (N rounds of each queue type)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import kombu.pools
from kombu import Connection

from smtp_checks.shared.celery_app import check_queue
from tests.e2e.pipeline import RedisServer
from tests.smtp_servers import SmtpServer
from tests.worker_harness import RABBITMQ_URL, Deployment, publish, result_of

CHECKS = 20


def one_round(directory: Path, server: SmtpServer, state_url: str, kind: str) -> tuple[float, int]:
    site = f"bench{uuid.uuid4().hex[:8]}"
    hosts = [
        {"name": f"mx{n}", "address": "127.0.0.1", "port": server.port, "site": site,
         "checks": {"login": {}}}
        for n in range(CHECKS)
    ]  # fmt: skip
    directory.mkdir()
    deployment = Deployment.write(directory, {
        "broker_url": RABBITMQ_URL, "redis_url": state_url, "sites": {site: {}},
        "broker_queue_type": kind,
        "target_limits": {"max_concurrent": 100, "max_per_minute": 100_000},
        "defaults": {"tls": "none", "timeout": 10}, "hosts": hosts,
    })  # fmt: skip
    try:
        doomed = deployment.start_worker(site, name="w1", concurrency=10)
        deployment.start_worker(site, name="w2", concurrency=CHECKS)
        deadline = time.monotonic() + 30
        while deployment.log_text().count(f"consuming checks.{site}") < 2:
            assert time.monotonic() < deadline, "the workers never consumed"
            time.sleep(0.05)
        requests = [deployment.request(f"mx{n}/login") for n in range(CHECKS)]
        app = deployment.app()
        for request in requests:
            publish(app, request)
        deadline = time.monotonic() + 30
        while server.active_sessions < CHECKS:
            assert time.monotonic() < deadline, (
                f"{server.active_sessions} of the checks in flight\n{deployment.log_text()}"
            )
            time.sleep(0.01)
        doomed.kill()
        killed = time.monotonic()
        results = [result_of(state_url, request.run_id, timeout=30) for request in requests]
        took = time.monotonic() - killed
        assert all(result is not None for result in results), "a check never came back"
        again = sum(1 for result in results if result is not None and result.redelivered)
        return took, again
    finally:
        deployment.stop_workers()
        kombu.pools.reset()  # the next round's app must not publish on this one's channels
        with Connection(RABBITMQ_URL) as connection:
            channel = connection.channel()
            channel.queue_delete(check_queue(site))
            channel.exchange_delete(check_queue(site))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    figures: dict[str, list[tuple[float, int]]] = {"classic": [], "quorum": []}
    server = SmtpServer(banner_delay=1.0).start()
    with tempfile.TemporaryDirectory() as directory:
        redis_server = RedisServer(Path(directory) / "redis")
        redis_server.start()
        try:
            for number in range(args.rounds):
                kinds = ("classic", "quorum") if number % 2 == 0 else ("quorum", "classic")
                for kind in kinds:
                    took, again = one_round(
                        Path(directory) / f"{kind}-{number}", server, redis_server.url, kind
                    )
                    figures[kind].append((took, again))
                    print(f"round {number + 1} {kind}: last result {took:.2f} s after the kill, "
                          f"{again} redelivered")  # fmt: skip
        finally:
            redis_server.stop()
            server.stop()
    for kind, rounds in figures.items():
        times = [took for took, _ in rounds]
        print(
            f"{kind}: kill to the last result median {statistics.median(times):.2f} s "
            f"(min {min(times):.2f}, max {max(times):.2f}), redelivered "
            f"{statistics.median([again for _, again in rounds]):.0f} of {CHECKS} (median)"
        )


if __name__ == "__main__":
    main()
