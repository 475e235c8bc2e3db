"""`smtp-checks worker --config FILE --site SITE`: run the checks of one site's queue.

Concurrency model: one asyncio loop runs every check of the process and the queue's work
(workers/core.py; on RabbitMQ with a consumer thread beside it, workers/sources/).
`--concurrency` is how many checks are in flight at once.
Checks are network waits, so one process keeps hundreds of them going at little CPU, and
each check's own deadline bounds it. BENCHMARKS.md has the figures.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
from types import FrameType

from smtp_checks.cli.metrics_option import add_metrics_option
from smtp_checks.shared import role_logging
from smtp_checks.shared.config import load_config
from smtp_checks.shared.metrics import measuring, start_role_metrics
from smtp_checks.workers.assembly import build_worker
from smtp_checks.workers.garbage_collector import quiet_garbage_collector

DEFAULT_CONCURRENCY = 500
log = logging.getLogger("smtp_checks.worker")


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
    add_metrics_option(parser)
    args = parser.parse_args(argv)
    role_logging.configure(args.loglevel)
    name = args.hostname or f"smtp-checks-{args.site}@{socket.gethostname()}"
    config = load_config(args.config)
    worker = build_worker(
        config, args.site, name=name, concurrency=args.concurrency,
        measured=measuring(args.metrics),
    )  # fmt: skip
    start_role_metrics("worker", args.metrics)

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("%s stopping (signal %d): finishing the checks in flight", name, signum)
        worker.stop_event.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("%s ready", name)
    quiet_garbage_collector()
    worker.run()
    log.info("%s stopped", name)
    return 0
