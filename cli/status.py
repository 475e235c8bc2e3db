"""`smtp-checks status --config FILE [--json]`: the pipeline's health (shared/pipeline_health.py).

Without `--json` it is a Centreon plugin: a status line with perfdata first, then the
details as long output, and the exit code of that status (0 OK, 1 WARNING, 2 CRITICAL,
3 UNKNOWN when Redis cannot be read), so Centreon can run it as an active check of the
pipeline itself.
"""

from __future__ import annotations

import argparse
import sys
import time

import redis

from smtp_checks.shared.config import load_config
from smtp_checks.shared.errors import ConfigError, SmtpChecksError
from smtp_checks.shared.output.status import Status
from smtp_checks.shared.pipeline_health import PipelineHealth, read_health
from smtp_checks.shared.pipeline_report import long_output, pipeline_report
from smtp_checks.shared.redis_client import broker_redis, connect, state_redis


def run_status(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="smtp-checks status", description="The pipeline's health, as a Centreon plugin."
    )
    parser.add_argument("--config", required=True, help="the YAML configuration file")
    parser.add_argument("--json", action="store_true", help="print the whole picture as JSON")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as error:  # a plugin says why on its output line, as UNKNOWN
        first, *_ = str(error).splitlines() or ["invalid configuration"]
        sys.stdout.write(f"UNKNOWN: {first}\n{error}\n")
        return int(Status.UNKNOWN)
    state, broker_address = state_redis(config), broker_redis(config)
    if state is None:
        sys.stdout.write("UNKNOWN: status reads Redis: set broker_url (Redis) or redis_url\n")
        return int(Status.UNKNOWN)
    try:
        client = connect(state)
        broker = connect(broker_address) if broker_address else None
    except SmtpChecksError as error:  # a secret not found, a Sentinel half configured
        sys.stdout.write(f"UNKNOWN: {error}\n")
        return int(Status.UNKNOWN)
    try:
        health = read_health(config, client, broker, time.time())
    except redis.RedisError as error:  # unreachable, or refused (an ACL without the right)
        sys.stdout.write(f"UNKNOWN: cannot read the pipeline's state in Redis: {error}\n")
        return int(Status.UNKNOWN)
    finally:
        client.close()
        if broker is not None:
            broker.close()
    sys.stdout.write(health.as_json() + "\n" if args.json else render(health))
    return int(health.status)


def render(health: PipelineHealth) -> str:
    """The plugin's output: the status line with its perfdata, then one line per part."""
    return "\n".join([pipeline_report(health).line, *long_output(health)]) + "\n"
