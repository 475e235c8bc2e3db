"""`smtp-checks beat` and `smtp-checks enqueue`: argument parsing, exit codes and signals
around `scheduler.beat` and `scheduler.adhoc`, which stay free of process concerns."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

import redis
from kombu.exceptions import OperationalError

from smtp_checks.scheduler.adhoc import AdhocError, connect, enqueue_check, find_check
from smtp_checks.scheduler.beat import Beat, leader_key
from smtp_checks.scheduler.leader import LeaderLock
from smtp_checks.shared import role_logging
from smtp_checks.shared.adhoc_replies import AdhocReplies
from smtp_checks.shared.celery_app import check_queue
from smtp_checks.shared.config import Config, ConfigError, load_config
from smtp_checks.shared.output.result_output import render_result
from smtp_checks.shared.outstanding import Ledger

DEFAULT_LOCK_TTL = 10.0
UNKNOWN = 3


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
    args = parser.parse_args(argv)
    if args.lock_ttl <= 0:
        parser.error("--lock-ttl must be positive")
    config = _load(args.config)
    if config is None:
        return 2
    if config.broker_url is None:
        sys.stderr.write(f"{args.config}: broker_url is not set: the beat needs a broker\n")
        return 2
    if config.state_redis_url is None:
        sys.stderr.write(
            f"{args.config}: no Redis for the leader lock and the slots: set redis_url "
            "(or use a Redis broker_url)\n"
        )
        return 2
    role_logging.configure(args.loglevel)
    client = redis.Redis.from_url(config.state_redis_url, socket_timeout=5)
    lock = LeaderLock(client, leader_key(), ttl=args.lock_ttl)
    beat = Beat(config, client=client, lock=lock, config_path=args.config)
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


def run_enqueue(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="smtp-checks enqueue",
        description="Run one configured check now through its site's queue.",
    )
    parser.add_argument("--config", required=True, help="the YAML configuration file")
    parser.add_argument("--host", required=True, help="the host's name in the config")
    parser.add_argument("--check", required=True, choices=["login", "message"])
    parser.add_argument(
        "--wait", type=float, metavar="SECONDS",
        help="wait this long for the result, print it as the plugin does and exit with its code",
    )  # fmt: skip
    args = parser.parse_args(argv)
    config = _load(args.config)
    if config is None:
        return 2
    try:
        check = find_check(config, args.host, args.check)
        app, client = connect(config, wait=args.wait or 0.0)
    except AdhocError as error:
        sys.stderr.write(f"smtp-checks enqueue: {error}\n")
        return 2
    try:
        request = enqueue_check(
            config,
            args.host,
            args.check,
            app=app,
            ledger=Ledger(client, grace=config.centreon.orphan_grace),
        )
        if args.wait is None:
            sys.stdout.write(f"{request.run_id}\n")
            return 0
        result = AdhocReplies(client).wait(request.run_id, args.wait)
    except (OperationalError, redis.RedisError) as error:
        sys.stdout.write(
            f"UNKNOWN: cannot enqueue the check on {check_queue(check.site)}: {error}\n"
        )
        return UNKNOWN
    finally:
        client.close()
    if result is None:
        sys.stdout.write(
            f"UNKNOWN: no result within {args.wait:g} s from a worker on "
            f"{check_queue(check.site)} (run {request.run_id})\n"
        )
        return UNKNOWN
    rendered = render_result(result)
    sys.stdout.write(rendered.text if rendered.text.endswith("\n") else f"{rendered.text}\n")
    return rendered.exit_code


def _load(path: str) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as error:
        sys.stderr.write(f"{error}\n")
        return None
