"""What the Prometheus metrics cost a worker: CPU per check at full speed, with and without
`--metrics`, pair by pair (the two alternate, so that the machine's drift hits both).

Each run is bench/worker_throughput.py's: Redis database 10 flushed, N login checks
published to `checks.bench`, ONE `smtp-checks worker` started, the clock from its first
result to its last, its CPU from /proc. With metrics, a scraper reads `/metrics` every
`--scrape-every` seconds during the run, as Prometheus would (more often than Prometheus's
usual 15 s, so the serving cost shows too).

Usage: python -m bench.metrics_cost [--checks 5000] [--concurrency 500] [--pairs 3]
Redis database 10 of 127.0.0.1:6379 is flushed before and after: do not point it at data.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from bench.worker_throughput import (
    Run,
    flushed_db,
    run_worker,
    server_child,
    write_config,
)
from tests.e2e.pipeline import free_port


class Scraper(threading.Thread):
    """Reads `url` every `every` seconds until stopped; counts the scrapes that answered."""

    def __init__(self, url: str, every: float) -> None:
        super().__init__(daemon=True)
        self.url, self.every = url, every
        self.scrapes = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    response.read()
                self.scrapes += 1
            except OSError:
                pass  # the worker is not serving yet


def cpu_ms_per_check(run: Run) -> float:
    return (run.last.worker - run.first.worker) / (run.checks - 1) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )  # fmt: skip
    parser.add_argument("--checks", type=int, default=5000, help="checks per run (5000)")
    parser.add_argument("--concurrency", type=int, default=500, help="worker --concurrency")
    parser.add_argument("--pairs", type=int, default=3, help="runs with and without (3)")
    parser.add_argument("--hosts", type=int, default=5000, help="configured hosts (5000)")
    parser.add_argument("--scrape-every", type=float, default=1.0, help="seconds (1)")
    parser.add_argument("--timeout", type=float, default=300, help="per run, seconds (300)")
    args = parser.parse_args()

    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-m-")))
        servers = [stack.enter_context(server_child(backlog=4096)) for _ in range(2)]
        client = stack.enter_context(flushed_db())
        deployment = write_config(directory, [s.port for s in servers], args.hosts)
        figures: dict[str, list[tuple[float, float]]] = {"without": [], "with": []}
        print("pair  metrics  checks/s  cpu_ms/check  scrapes", flush=True)
        for pair in range(1, args.pairs + 1):
            for arm in ("without", "with"):
                extra: tuple[str, ...] = ()
                scraper = None
                if arm == "with":
                    address = f"127.0.0.1:{free_port()}"
                    extra = ("--metrics", address)
                    scraper = Scraper(f"http://{address}/metrics", args.scrape_every)
                    scraper.start()
                run = run_worker(
                    deployment, client, servers, checks=args.checks,
                    concurrency=args.concurrency, loglevel="INFO",
                    log=directory / f"worker-{pair}-{arm}.log", timeout=args.timeout,
                    extra=extra, label=arm,
                )  # fmt: skip
                if scraper is not None:
                    scraper.stopped.set()
                    scraper.join()
                figures[arm].append((run.rate, cpu_ms_per_check(run)))
                scrapes = scraper.scrapes if scraper else "-"
                print(
                    f"{pair:4d}  {arm:7s}  {run.rate:8.0f}  {cpu_ms_per_check(run):12.3f}  "
                    f"{scrapes!s:>7}",
                    flush=True,
                )
        without = statistics.mean(cpu for _, cpu in figures["without"])
        with_metrics = statistics.mean(cpu for _, cpu in figures["with"])
        ratios = [
            measured[1] / bare[1]
            for measured, bare in zip(figures["with"], figures["without"], strict=True)
        ]
        print(
            f"cpu_ms/check: {without:.3f} without, {with_metrics:.3f} with metrics "
            f"({with_metrics / without - 1:+.1%}); pair by pair: "
            + ", ".join(f"{ratio - 1:+.1%}" for ratio in ratios),
            flush=True,
        )


if __name__ == "__main__":
    main()
