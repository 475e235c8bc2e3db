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
from smtp_checks.shared.errors import ConfigError
from smtp_checks.shared.output.perfdata import Perfdata
from smtp_checks.shared.output.status import Status
from smtp_checks.shared.pipeline_health import (
    OutboxHealth,
    PipelineHealth,
    SiteHealth,
    broker_redis_url,
    read_health,
)
from smtp_checks.shared.redis_client import connect


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
    if config.state_redis_url is None:
        sys.stdout.write("UNKNOWN: status reads Redis: set broker_url (Redis) or redis_url\n")
        return int(Status.UNKNOWN)
    client = connect(config.state_redis_url)
    broker_url = broker_redis_url(config)
    broker = connect(broker_url) if broker_url else None
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
    workers = sum(len(site.workers) for site in health.sites)
    queued = sum(site.queued or 0 for site in health.sites)
    waiting = sum(outbox.waiting for outbox in health.outboxes)
    summary = "; ".join(health.problems) or (
        f"{len(health.sites)} sites, {workers} workers, {queued} queued, "
        + (f"{waiting} results waiting for Centreon" if waiting else "outboxes empty")
    )
    perfdata = [
        *(Perfdata(f"queued_{site.site}", site.queued or 0, min=0) for site in health.sites),
        *(Perfdata(f"workers_{site.site}", len(site.workers), min=0) for site in health.sites),
        *(
            Perfdata(f"checks_per_minute_{site.site}", site.checks_per_minute, min=0)
            for site in health.sites
        ),
        *(Perfdata(f"outbox_{box.forwarder}", box.waiting, min=0) for box in health.outboxes),
        Perfdata("orphans_last_hour", health.orphans_last_hour, min=0),
    ]
    lines = [f"{health.status.name}: {summary} | {' '.join(p.render() for p in perfdata)}"]
    lines += [_site_line(site) for site in health.sites]
    lines.append(_beat_line(health))
    lines.append(f"consumers: {', '.join(health.consumers) or 'none alive'}")
    lines += [_outbox_line(box, health.at) for box in health.outboxes]
    lines.append(f"orphans in the last hour: {health.orphans_last_hour}")
    return "\n".join(lines) + "\n"


def _site_line(site: SiteHealth) -> str:
    queued = "?" if site.queued is None else str(site.queued)
    oldest = f", oldest {site.oldest_queued_for:.0f} s" if site.oldest_queued_for else ""
    gone = f", gone: {', '.join(site.workers_gone)}" if site.workers_gone else ""
    return (
        f"site {site.site} [{site.status.name}]: {len(site.workers)} worker(s) "
        f"({site.in_flight} of {site.concurrency} in flight{gone}), "
        f"{site.checks_per_minute:.0f} of {site.asked_per_minute:.0f} checks/min, "
        f"queued {queued}{oldest}"
    )


def _beat_line(health: PipelineHealth) -> str:
    if health.beat_leader is None:
        return f"beat: no leader ({len(health.beats)} alive)"
    last = (
        f", last enqueue {health.at - health.last_enqueue_at:.0f} s ago"
        if health.last_enqueue_at is not None
        else ""
    )
    return f"beat: {health.beat_leader} leads{last} ({len(health.beats)} alive)"


def _outbox_line(box: OutboxHealth, now: float) -> str:
    parts = [f"{box.waiting} waiting"]
    if box.oldest_for is not None:
        parts.append(f"oldest {box.oldest_for:.0f} s")
    if box.delivered_at is not None:
        parts.append(f"last delivery {now - box.delivered_at:.0f} s ago")
    if box.error and (box.failed_at or 0) >= (box.delivered_at or 0):
        parts.append(f"last error {now - (box.failed_at or now):.0f} s ago: {box.error}")
    return f"outbox {box.forwarder} [{box.status.name}]: {', '.join(parts)}"
