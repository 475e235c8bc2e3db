"""The pipeline's own health, read from Redis: what `smtp-checks status` prints and exits with.

Everything comes from what the roles already leave in Redis: their heartbeats
(shared/heartbeats.py), the check queues (on a Redis broker; the workers' reported depth on
RabbitMQ), the beat's leader, the forwarders' outboxes and their last delivery and error
(`smtp-checks:outboxes`), and the orphans of the last hour. The verdict, worst first:

- CRITICAL: a site with checks and no live worker; no live beat leading; no live consumer;
  an outbox whose oldest result waits longer than 3 x `resend_interval`; a site that runs
  under half the checks per minute its config asks for;
- WARNING: a site with fewer live workers than it had (a worker of the last hour is gone);
  an outbox older than `resend_interval`; a site under 90% of what it is asked for.

A site's rate is judged only when it is behind: its queue not seen empty for a minute (a
site that empties its queue keeps up, whatever a minute's count says about checks run every
few minutes), and its workers up for a minute (their count covers a whole minute).
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from smtp_checks.shared.celery_app import check_queue
from smtp_checks.shared.config import Config, asked_per_minute
from smtp_checks.shared.heartbeats import Heartbeat, SiteWorkers, live_sites, read_heartbeats
from smtp_checks.shared.keys import KEYS, Keys
from smtp_checks.shared.output.status import Status, worst
from smtp_checks.shared.redis_client import REDIS_DOWN
from smtp_checks.shared.sanitize import sanitize

BEHIND_FOR = 60.0  # seconds without an empty queue before a site's rate is judged
WARNING_SHARE = 0.9  # of the checks per minute asked for
CRITICAL_SHARE = 0.5


@dataclass(frozen=True)
class SiteHealth:
    site: str
    checks: int
    asked_per_minute: float
    workers: list[str]  # live
    workers_gone: list[str]  # seen in the last hour, not alive now
    checks_per_minute: float
    in_flight: int
    concurrency: int
    queued: int | None  # None: nobody could tell (RabbitMQ and no live worker)
    oldest_queued_for: float | None  # seconds the oldest queued run has waited
    status: Status = Status.OK
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class OutboxHealth:
    forwarder: str
    waiting: int
    oldest_for: float | None  # seconds the oldest waiting result has waited
    delivered_at: float | None
    failed_at: float | None
    error: str | None
    status: Status = Status.OK
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PipelineHealth:
    at: float
    sites: list[SiteHealth]
    beat_leader: str | None
    last_enqueue_at: float | None
    beats: list[str]
    consumers: list[str]
    outboxes: list[OutboxHealth]
    orphans_last_hour: int
    status: Status
    problems: list[str]

    def as_json(self) -> str:
        data = asdict(self)
        data["status"] = self.status.name
        for part in (*data["sites"], *data["outboxes"]):
            part["status"] = Status(part["status"]).name
        return json.dumps(data, indent=2)


def read_health(
    config: Config, client: redis.Redis, broker: redis.Redis | None, now: float, keys: Keys = KEYS
) -> PipelineHealth:
    """The pipeline's health at `now`. `client`: the state Redis; `broker`: the broker's
    Redis, None on RabbitMQ."""
    heartbeats = read_heartbeats(client, now, keys=keys, forget=False)
    checks = config.scheduled_checks()
    counts, asked = Counter(check.site for check in checks), asked_per_minute(checks)
    live = live_sites(heartbeats, now)
    gone = _gone(heartbeats, live, now)
    sites = [
        _site(
            name,
            checks=counts[name],
            asked=asked.get(name, 0.0),
            workers=live.get(name),
            gone=gone.get(name, []),
            broker=broker,
            now=now,
        )
        for name in config.sites
    ]
    beats = [h for h in heartbeats if h.role == "beat" and h.alive(now)]
    leader = next((h for h in beats if h.figure("leading")), None)
    consumers = [h.name for h in heartbeats if h.role == "consumer" and h.alive(now)]
    outboxes = [
        _outbox(forwarder, raw, client, keys=keys, now=now, resend=config.centreon.resend_interval)
        for forwarder, raw in sorted(client.hgetall(keys.outboxes).items())
    ]
    parts: list[SiteHealth | OutboxHealth] = [*sites, *outboxes]
    problems = [problem for part in parts for problem in part.problems]
    statuses = [part.status for part in parts]
    if leader is None:
        problems.append("no beat is leading: nothing is scheduled")
        statuses.append(Status.CRITICAL)
    if not consumers:
        problems.append("no live consumer: nothing reaches Centreon")
        statuses.append(Status.CRITICAL)
    last_enqueue = leader.figure("last_enqueue_at") if leader else None
    return PipelineHealth(
        at=now,
        sites=sites,
        beat_leader=leader.name if leader else None,
        last_enqueue_at=float(last_enqueue) if isinstance(last_enqueue, int | float) else None,
        beats=[h.name for h in beats],
        consumers=consumers,
        outboxes=outboxes,
        orphans_last_hour=int(client.zcount(keys.orphans_recent, now - 3600, "+inf")),
        status=worst(Status.OK, *statuses),
        problems=problems,
    )


def _site(
    site: str,
    *,
    checks: int,
    asked: float,
    workers: SiteWorkers | None,
    gone: list[str],
    broker: redis.Redis | None,
    now: float,
) -> SiteHealth:
    rate = workers.checks_per_minute if workers else 0.0
    status, problems = Status.OK, []
    try:
        queued, oldest = _queue(site, broker, workers, now)
    except REDIS_DOWN as error:
        queued, oldest = None, None
        status = Status.CRITICAL
        problems.append(f"site {site}: its queue's broker cannot be read: {error}")
    if checks and workers is None:
        status = worst(status, Status.CRITICAL)
        problems.append(f"site {site} has {checks} check(s) and no live worker")
    elif gone:
        status = worst(status, Status.WARNING)
        problems.append(f"site {site} lost {len(gone)} worker(s): {', '.join(gone)}")
    if workers is not None and _behind(workers, queued, now):
        share = rate / asked if asked else 1.0
        verdict = (
            Status.CRITICAL
            if share < CRITICAL_SHARE
            else Status.WARNING
            if share < WARNING_SHARE
            else Status.OK
        )
        if verdict is not Status.OK:
            status = worst(status, verdict)
            problems.append(
                f"site {site} runs {rate:.0f} of the {asked:.0f} checks per minute its "
                f"config asks for ({share:.0%})"
            )
    return SiteHealth(
        site=site,
        checks=checks,
        asked_per_minute=round(asked, 1),
        workers=list(workers.names) if workers else [],
        workers_gone=gone,
        checks_per_minute=rate,
        in_flight=workers.in_flight if workers else 0,
        concurrency=workers.concurrency if workers else 0,
        queued=queued,
        oldest_queued_for=oldest,
        status=status,
        problems=problems,
    )


def _gone(
    heartbeats: list[Heartbeat], live: dict[str, SiteWorkers], now: float
) -> dict[str, list[str]]:
    """By site: the workers seen in the last hour that are not alive now (nor restarted
    under the same name)."""
    gone: dict[str, set[str]] = {}
    for heartbeat in heartbeats:
        if heartbeat.role == "worker" and heartbeat.site and not heartbeat.alive(now):
            gone.setdefault(heartbeat.site, set()).add(heartbeat.name)
    return {
        site: sorted(names - set(live[site].names if site in live else ()))
        for site, names in gone.items()
    }


def _behind(workers: SiteWorkers, queued: int | None, now: float) -> bool:
    """The site's queue has not been seen empty for a minute, by workers up for a minute.
    Where no worker can see it empty (RabbitMQ, the Celery compatibility path): a queue
    that holds runs now."""
    if workers.youngest_started_at is None or now - workers.youngest_started_at < BEHIND_FOR:
        return False
    if workers.queue_empty_at is None:
        return bool(queued)
    return now - workers.queue_empty_at > BEHIND_FOR


def _queue(
    site: str, broker: redis.Redis | None, workers: SiteWorkers | None, now: float
) -> tuple[int | None, float | None]:
    """How many runs wait on the site's queue, and for how long the oldest has waited."""
    if broker is None:  # RabbitMQ: what the workers last saw
        return (workers.queue_depth if workers else None), None
    queue = check_queue(site)
    depth = int(broker.llen(queue))
    oldest = broker.lindex(queue, -1)  # kombu pushes on the left: the oldest is on the right
    scheduled = _scheduled_for(oldest) if oldest is not None else None
    return depth, (now - scheduled if scheduled is not None else None)


def _scheduled_for(message: bytes | str) -> float | None:
    """The slot of a queued check message (a Celery task message: its one argument)."""
    try:
        args = json.loads(base64.b64decode(json.loads(message)["body"]))[0]
        request: dict[str, Any] = args[0]
        return float(request.get("identity", request)["scheduled_for"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def _outbox(
    forwarder: bytes | str, raw: bytes | str, client: redis.Redis, *, keys: Keys, now: float,
    resend: float,
) -> OutboxHealth:  # fmt: skip
    name = forwarder.decode() if isinstance(forwarder, bytes) else forwarder
    news: dict[str, Any] = json.loads(raw)
    waiting, oldest = outbox_backlog(client, name, keys=keys)
    oldest_for = now - oldest if oldest is not None else None
    status, problems = Status.OK, []
    if oldest_for is not None and oldest_for > resend:
        status = Status.CRITICAL if oldest_for > 3 * resend else Status.WARNING
        problems.append(f"outbox {name} holds results {oldest_for:.0f} s old")
    error = news.get("error")
    return OutboxHealth(
        forwarder=name,
        waiting=waiting,
        oldest_for=oldest_for,
        delivered_at=news.get("delivered_at"),
        failed_at=news.get("failed_at"),
        error=sanitize(error) if isinstance(error, str) else None,
        status=status,
        problems=problems,
    )


def outbox_backlog(
    client: redis.Redis, name: str, *, keys: Keys = KEYS
) -> tuple[int, float | None]:
    """How many results wait in forwarder `name`'s outbox (its in-flight batch included),
    and the check time of the oldest, None when none waits."""
    queue, inflight = keys.outbox(name), keys.outbox_inflight(name)
    unsettled = [item for item in client.lrange(inflight, 0, -1) if item]  # "": settled
    waiting = len(unsettled) + int(client.llen(queue))
    oldest = _check_time(unsettled[0] if unsettled else client.lindex(queue, 0))
    return waiting, oldest if waiting else None


def _check_time(item: bytes | str | None) -> float | None:
    if item is None:
        return None
    try:
        return float(json.loads(item)["check_time"])
    except (ValueError, KeyError, TypeError):
        return None  # a settled slot, or an item of another release
