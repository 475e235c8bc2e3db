"""Heartbeats: every running process of the system (each worker, beat and consumer) says,
every `HEARTBEAT_EVERY` seconds, that it is alive and how it is doing, in one Redis hash.

Who reads them: the beat (when each site's queue was last seen empty: the ledger's test for a
lost run), the consumer (which sites have live workers: a run queued there is late, not an
orphan; and the figures of a starvation UNKNOWN), `smtp-checks status` and the metrics. A
process is alive while its last heartbeat is younger than `ALIVE_FOR`; a worker writes one
only while it reaches its queue, so a worker cut off from its broker counts as dead, and a
last one marked `stopped` when it stops, so that a planned stop counts at once. The
heartbeats of dead processes are kept for `FORGET_AFTER`, for an operator to see, then
dropped by whoever reads them.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio

from smtp_checks.shared.keys import KEYS, Keys
from smtp_checks.shared.version import package_version

HEARTBEAT_EVERY = 2.0  # seconds between two heartbeats of a process
ALIVE_FOR = 10.0  # seconds a heartbeat shows its process alive: several missed beats
FORGET_AFTER = 3600.0  # seconds a dead process's last heartbeat is kept

Figure = float | int | str | None


@dataclass(frozen=True)
class Heartbeat:
    role: str  # "worker", "beat", "consumer"
    name: str  # the process's name, unique among its role
    at: float  # epoch seconds
    started_at: float
    site: str | None = None  # a worker's site
    figures: Mapping[str, Figure] = field(default_factory=dict)  # the role's own figures
    host: str = field(default_factory=socket.gethostname)  # the machine
    pid: int = field(default_factory=os.getpid)
    version: str = field(default_factory=package_version)
    stopped: bool = False  # its process's last: it stopped

    @property
    def field(self) -> str:
        return f"{self.role}:{self.name}"

    def alive(self, now: float) -> bool:
        return not self.stopped and now - self.at < ALIVE_FOR

    def figure(self, name: str) -> Figure:
        return self.figures.get(name)

    def to_json(self) -> str:
        return json.dumps(
            {
                "role": self.role,
                "name": self.name,
                "at": self.at,
                "started_at": self.started_at,
                "site": self.site,
                "figures": dict(self.figures),
                "host": self.host,
                "pid": self.pid,
                "version": self.version,
                "stopped": self.stopped,
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Heartbeat:
        data: dict[str, Any] = json.loads(text)
        return cls(
            role=str(data["role"]),
            name=str(data["name"]),
            at=float(data["at"]),
            started_at=float(data["started_at"]),
            site=data.get("site"),
            figures=dict(data.get("figures") or {}),
            host=str(data.get("host", "")),
            pid=int(data.get("pid", 0)),
            version=str(data.get("version", "")),
            stopped=bool(data.get("stopped", False)),
        )

    def write(
        self, pipe: redis.client.Pipeline | redis.asyncio.client.Pipeline, keys: Keys = KEYS
    ) -> None:
        """Add this heartbeat to `pipe` (a process's own round trip, sync or async)."""
        pipe.hset(keys.heartbeats, self.field, self.to_json())


def send_heartbeat(client: redis.Redis, heartbeat: Heartbeat, *, keys: Keys = KEYS) -> None:
    """Write one heartbeat now (a process without a round trip of its own to add it to)."""
    client.hset(keys.heartbeats, heartbeat.field, heartbeat.to_json())


def read_heartbeats(
    client: redis.Redis, now: float, *, keys: Keys = KEYS, forget: bool = True
) -> list[Heartbeat]:
    """Every heartbeat kept, alive or not, but those older than `FORGET_AFTER` and any that
    does not parse, which it drops from Redis unless `forget` is False (a reader that must
    not write: `smtp-checks status`, run by a read-only user)."""
    heartbeats, forgotten = [], []
    for name, raw in client.hgetall(keys.heartbeats).items():
        try:
            heartbeat = Heartbeat.from_json(raw)
        except (ValueError, KeyError, TypeError):
            forgotten.append(name)
            continue
        if now - heartbeat.at > FORGET_AFTER:
            forgotten.append(name)
        else:
            heartbeats.append(heartbeat)
    if forgotten and forget:
        client.hdel(keys.heartbeats, *forgotten)
    return heartbeats


@dataclass(frozen=True)
class SiteWorkers:
    """A site's live workers, summed up from their heartbeats."""

    site: str
    workers: int
    checks_per_minute: float  # checks the site's workers finished in the last minute
    queue: str | None
    queue_depth: int | None  # the largest depth a worker reported (None: none could tell)
    queue_empty_at: float | None  # the last time a worker found the queue empty
    names: tuple[str, ...] = ()
    in_flight: int = 0
    concurrency: int = 0
    youngest_started_at: float | None = None  # when the most recently started worker did


def live_sites(heartbeats: list[Heartbeat], now: float) -> dict[str, SiteWorkers]:
    """The sites with at least one live worker, each summed up."""
    by_site: dict[str, list[Heartbeat]] = {}
    for heartbeat in heartbeats:
        if heartbeat.role == "worker" and heartbeat.site and heartbeat.alive(now):
            by_site.setdefault(heartbeat.site, []).append(heartbeat)
    return {site: _summed(site, workers) for site, workers in by_site.items()}


def _summed(site: str, workers: list[Heartbeat]) -> SiteWorkers:
    def numbers(name: str) -> list[float]:
        return [float(v) for w in workers if isinstance(v := w.figure(name), int | float)]

    depths, empty = numbers("queue_depth"), numbers("queue_empty_at")
    queue = next((str(q) for w in workers if (q := w.figure("queue"))), None)
    return SiteWorkers(
        site=site,
        workers=len(workers),
        checks_per_minute=sum(numbers("checks_per_minute")),
        queue=queue,
        queue_depth=int(max(depths)) if depths else None,
        queue_empty_at=max(empty, default=None),
        names=tuple(sorted(w.name for w in workers)),
        in_flight=int(sum(numbers("in_flight"))),
        concurrency=int(sum(numbers("concurrency"))),
        youngest_started_at=max(w.started_at for w in workers),
    )
