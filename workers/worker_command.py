"""`smtp-checks worker --config FILE --site SITE`: run the checks of one site's queue.

Concurrency model: Celery's thread pool, each thread waiting on a check that runs on the
process's one asyncio loop (workers/event_loop.py). Checks are network waits, so a thread
per check in flight costs little memory and no CPU, and the probe's own deadline holds
whatever the pool (Celery's time limits do not apply to threads). BENCHMARKS.md has the
figures that led here.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys

from shared.celery_app import check_queue
from shared.config import ConfigError, load_config
from workers.worker_app import WorkerSetupError, worker_app

DEFAULT_CONCURRENCY = 500


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
    try:
        config = load_config(args.config)
        app = worker_app(config, args.site)
    except ConfigError as error:
        sys.stderr.write(f"{error}\n")
        return 2
    except WorkerSetupError as error:
        sys.stderr.write(f"{args.config}: {error}\n")
        return 2
    logging.basicConfig(
        level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # Celery logs every task at INFO: thousands of lines a minute that say nothing.
        logging.getLogger("celery.app.trace").setLevel(logging.WARNING)
    worker = app.Worker(
        queues=[check_queue(args.site)],
        pool="threads",
        concurrency=args.concurrency,
        hostname=args.hostname or f"smtp-checks-{args.site}@{socket.gethostname()}",
        loglevel=args.loglevel.upper(),
        without_mingle=True,
        without_gossip=True,
        without_heartbeat=False,
    )
    worker.start()
    return int(worker.exitcode or 0)
