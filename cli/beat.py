"""`smtp-checks beat --config FILE`: schedule every configured check. Arguments and signals
around scheduler/beat.py, which stays free of process concerns."""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from smtp_checks.cli.metrics_option import add_metrics_option
from smtp_checks.scheduler.beat import Beat
from smtp_checks.scheduler.leader import LeaderLock
from smtp_checks.shared import role_logging
from smtp_checks.shared.config import load_config
from smtp_checks.shared.errors import SetupError
from smtp_checks.shared.keys import KEYS
from smtp_checks.shared.metrics import start_role_metrics
from smtp_checks.shared.redis_client import connect, state_redis

DEFAULT_LOCK_TTL = 10.0


def run_beat(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="smtp-checks beat", description="Schedule every configured check."
    )
    parser.add_argument("--config", required=True, help="the YAML configuration file")
    parser.add_argument(
        "--lock-ttl", type=float, default=DEFAULT_LOCK_TTL,
        help=f"seconds the leader lock lives unless renewed: how soon another beat takes "
        f"over from a dead one (default {DEFAULT_LOCK_TTL:g})",
    )  # fmt: skip
    parser.add_argument("--loglevel", default="INFO")
    add_metrics_option(parser)
    args = parser.parse_args(argv)
    if args.lock_ttl <= 0:
        parser.error("--lock-ttl must be positive")
    config = load_config(args.config)
    if config.broker_url is None:
        raise SetupError(f"{args.config}: broker_url is not set: the beat needs a broker")
    state = state_redis(config)
    if state is None:
        raise SetupError(
            f"{args.config}: no Redis for the leader lock and the slots: set redis_url "
            "(or use a Redis broker_url)"
        )
    role_logging.configure(args.loglevel)
    client = connect(state)
    lock = LeaderLock(client, KEYS.beat_leader, ttl=args.lock_ttl)
    beat = Beat(config, client=client, lock=lock, config_path=args.config)
    start_role_metrics("beat", args.metrics)
    stop = threading.Event()

    def on_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    def on_reload(signum: int, frame: FrameType | None) -> None:
        beat.request_reload()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_reload)
    beat.run(stop)
    return 0
