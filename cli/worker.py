"""`smtp-checks worker --config FILE --site SITE`: run the checks of one site's queue.

Concurrency model: one asyncio loop runs every check of the process and, on a Redis broker,
reads `checks.<SITE>` too (workers/redis_consumer.py; on RabbitMQ a consumer thread does,
workers/check_consumer.py). `--concurrency` is how many checks are in flight at once.
Checks are network waits, so one process keeps hundreds of them going at little CPU, and
each check's own deadline bounds it. BENCHMARKS.md has the figures.
"""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import socket
import sys
from types import FrameType

from smtp_checks.shared import role_logging
from smtp_checks.shared.config import ConfigError, load_config
from smtp_checks.workers.worker_app import WorkerSetupError, check_consumer

DEFAULT_CONCURRENCY = 500
log = logging.getLogger("smtp_checks.worker")


def quiet_garbage_collector() -> None:
    """Keep the collector's pauses out of `time`: a full collection stops the event loop
    while it walks every object, and a reply that arrives meanwhile is read late. Measured
    at 400 checks a second with 850 in flight (BENCHMARKS.md, "Workers"): full collections
    every 2 s, 40 to 90 ms each, were the whole p99 of `time`. So: freeze what startup made
    (about 50,000 objects that live as long as the process) out of every collection, and
    collect the oldest generation ten times less often (about every 30 s, some 20 ms).
    Young collections stay as they are (under 2 ms)."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 100)


def run_worker(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="smtp-checks worker", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="the YAML configuration file")
    parser.add_argument("--site", required=True, help="the site whose queue this worker serves")
    parser.add_argument(
        "--concurrency", type=int, default=DEFAULT_CONCURRENCY,
        help=f"checks in flight at once (default {DEFAULT_CONCURRENCY})",
    )  # fmt: skip
    parser.add_argument("--loglevel", default="INFO")
    parser.add_argument("--hostname", help="worker name (default smtp-checks-SITE@HOST)")
    args = parser.parse_args(argv)
    role_logging.configure(args.loglevel)
    name = args.hostname or f"smtp-checks-{args.site}@{socket.gethostname()}"
    try:
        config = load_config(args.config)
        consumer = check_consumer(config, args.site, worker=name, concurrency=args.concurrency)
    except ConfigError as error:
        sys.stderr.write(f"{error}\n")
        return 2
    except WorkerSetupError as error:
        sys.stderr.write(f"{args.config}: {error}\n")
        return 2

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("%s stopping (signal %d): finishing the checks in flight", name, signum)
        consumer.stop_event.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("%s ready", name)
    quiet_garbage_collector()
    consumer.run()
    log.info("%s stopped", name)
    return 0
