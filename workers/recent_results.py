"""The results a worker published last, kept to be published again when the Redis that took
them may have lost them.

Redis acknowledges a write before its replicas (or its append-only file, `everysec`) have
it: a master that dies and is replaced by a replica (Sentinel), or a Redis restarted from
its files, comes back without its last writes, results included. Their runs would then
count as taken and never answered: orphans after `HELD_AT_MOST`, though the checks ran.

So a worker keeps the results of its last `KEEP_FOR` seconds of publishing (at most
`KEEP_AT_MOST`), and looks, with each heartbeat, at the replication id of the Redis it
talks to: a master's id changes when it is promoted or restarted, never otherwise. When it
has changed, the worker publishes the kept results again. The consumer recognises the
results it already has (by run id, and its deliverers by what they sent), the ledger those
already settled: nothing is forwarded twice. Nothing is published during an outage, so
what is kept then is what was published just before it, however long it lasts.
"""

from __future__ import annotations

import logging
from collections import deque

import redis.asyncio
import redis.exceptions

from smtp_checks.shared.messages import CheckResult

log = logging.getLogger("smtp_checks.worker")

KEEP_FOR = 10.0  # seconds of publishing kept: more than Redis's replication lag or fsync
KEEP_AT_MOST = 20_000


class RecentResults:
    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._client = client
        self._kept: deque[tuple[float, CheckResult]] = deque()
        self._replication_id: str | None = None
        self._watching = True  # False once Redis refused INFO (an ACL without it)

    def published(self, results: list[CheckResult], at: float) -> None:
        """`results` were published at `at` (epoch seconds)."""
        self._kept.extend((at, result) for result in results)
        while self._kept and (len(self._kept) > KEEP_AT_MOST or self._kept[0][0] < at - KEEP_FOR):
            self._kept.popleft()

    async def forgotten(self) -> tuple[list[CheckResult], str | None]:
        """The kept results, if the Redis answering now is not the one that took them (its
        replication id changed since the last look), with that id; else nothing. Call
        `published_again(id)` once they are out: until then they stay forgotten."""
        if not self._watching:
            return [], None
        try:
            info = await self._client.info("replication")
        except redis.exceptions.ResponseError as error:  # refused (an ACL), or renamed away
            log.info("cannot watch for a Redis failover (INFO refused: %s)", error)
            self._watching = False
            return [], None
        current = str(info.get("master_replid", ""))
        if self._replication_id is None:
            self._replication_id = current  # the first look: the Redis that takes them
        if current == self._replication_id:
            return [], None
        return [result for _, result in self._kept], current

    def published_again(self, replication_id: str) -> None:
        """The forgotten results are out again, on the Redis of `replication_id`."""
        self._replication_id = replication_id
