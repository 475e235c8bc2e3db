"""A site's check queue on a Redis broker, read in batches from the worker's event loop, at
least once.

The queue is the list kombu's Redis transport keeps for `checks.<site>`: the beat publishes
Celery messages there (LPUSH), and a kombu consumer would take them one at a time (a BRPOP,
then a transaction recording the message as unacknowledged, then another acknowledging it:
three round trips per check, from a thread that fights the event loop for the GIL). This
takes up to N messages in one script, which also acknowledges those finished since, and it
keeps kombu's own bookkeeping, so nothing changes for the rest of the system:

- a taken message is recorded in kombu's `unacked` hash and `unacked_index` sorted set,
  exactly as kombu records it, in the same script that takes it off the list: no moment
  where a crash loses it;
- a worker that dies leaves its messages there, and kombu's restore (run by every worker,
  `restore_visible`) puts them back on the queue after `visibility_timeout`, flagged
  redelivered; `celery -A ... worker` processes and these consumers rescue each other.

Only the queue's default-priority list is read: check messages carry no priority.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import redis.asyncio
from celery import Celery
from kombu import serialization
from kombu.exceptions import OperationalError
from kombu.transport.redis import Channel as KombuRedisChannel

from smtp_checks.shared.celery_app import queue_of
from smtp_checks.shared.redis_client import REDIS_DOWN
from smtp_checks.workers.sources.base import TakenMessage
from smtp_checks.workers.task_messages import request_of

log = logging.getLogger("smtp_checks.worker")
_BROKER_DOWN: tuple[type[BaseException], ...] = (OperationalError, *REDIS_DOWN)

UNACKED: Final = KombuRedisChannel.unacked_key
UNACKED_INDEX: Final = KombuRedisChannel.unacked_index_key

# KEYS: queue, unacked, unacked_index. ARGV: how many, now (the client's clock, as kombu's),
# then the delivery tags to acknowledge first. Takes the oldest messages (kombu publishes
# with LPUSH: the oldest is at the right) and records each as kombu does: unacked[tag] =
# [message, exchange, routing_key]. Returns the messages oldest first; one without a
# delivery tag is returned unrecorded (it is malformed and will be refused, never run).
_SETTLE_AND_TAKE: Final = """
for first = 3, #ARGV, 1000 do  -- in chunks: Lua unpacks at most a few thousand values
  local last = math.min(first + 999, #ARGV)
  redis.call('ZREM', KEYS[3], unpack(ARGV, first, last))
  redis.call('HDEL', KEYS[2], unpack(ARGV, first, last))
end
if tonumber(ARGV[1]) <= 0 then return {} end
local items = redis.call('LRANGE', KEYS[1], -tonumber(ARGV[1]), -1)
if #items == 0 then return items end
redis.call('LTRIM', KEYS[1], 0, -#items - 1)
local taken = {}
for i = #items, 1, -1 do
  local item = items[i]
  local ok, message = pcall(cjson.decode, item)
  if ok and type(message) == 'table' and type(message.properties) == 'table'
      and type(message.properties.delivery_tag) == 'string' then
    local info = message.properties.delivery_info
    if type(info) ~= 'table' then info = {} end
    local exchange = type(info.exchange) == 'string' and info.exchange or ''
    local routing_key = type(info.routing_key) == 'string' and info.routing_key or KEYS[1]
    local tag = message.properties.delivery_tag
    redis.call('ZADD', KEYS[3], ARGV[2], tag)
    redis.call('HSET', KEYS[2], tag,
      '[' .. item .. ', ' .. cjson.encode(exchange) .. ', ' .. cjson.encode(routing_key) .. ']')
  end
  taken[#taken + 1] = item
end
return taken
"""


@dataclass(frozen=True, kw_only=True)
class RedisMessage(TakenMessage):
    item: bytes  # the message as it sat on the list
    tag: str | None  # kombu's delivery tag, the key of its unacknowledged record


def parse(item: bytes) -> RedisMessage:
    """A message of the list; never raises."""
    try:
        envelope = json.loads(item)
    except ValueError:
        envelope = None
    properties = _field(envelope, "properties")
    tag = _field(properties, "delivery_tag")
    if not isinstance(tag, str):
        return RedisMessage(item=item, tag=None, request=None, refusal="not a kombu message")
    redelivered = bool(_field(_field(properties, "delivery_info"), "redelivered"))
    content_type = _field(envelope, "content-type")
    if content_type != "application/json":
        name = serialization.registry.type_to_name.get(  # type: ignore[attr-defined]
            str(content_type), "unknown"
        )
        refusal = f"content type {content_type!r} ({name}): only JSON is accepted"
        return RedisMessage(
            item=item, tag=tag, request=None, redelivered=redelivered, refusal=refusal
        )
    try:
        body = _field(envelope, "body")
        if _field(properties, "body_encoding") == "base64":
            body = base64.b64decode(body)
        decoded: Any = json.loads(body)
    except (ValueError, TypeError, binascii.Error) as error:
        refusal = f"undecodable body ({error})"
        return RedisMessage(
            item=item, tag=tag, request=None, redelivered=redelivered, refusal=refusal
        )
    task = _field(_field(envelope, "headers"), "task")
    return RedisMessage(
        item=item, tag=tag, request=request_of(task, decoded), redelivered=redelivered
    )


def _field(value: object, name: str) -> Any:
    return value.get(name) if isinstance(value, dict) else None


class RedisQueueSource:
    """`checks.<site>` on a Redis broker (a `QueueSource`)."""

    def __init__(self, client: redis.asyncio.Redis, app: Celery, queue: str) -> None:
        self._client = client
        self._app = app
        self.name = queue
        self.sees_empty_queue = True
        self._settle_and_take = client.register_script(_SETTLE_AND_TAKE)
        self._closed = threading.Event()

    async def exchange(self, done: Sequence[TakenMessage], room: int) -> list[TakenMessage]:
        """Acknowledge `done`, then take up to `room` new messages, oldest first, each
        recorded as unacknowledged; one round trip."""
        tags = [
            message.tag for message in done if isinstance(message, RedisMessage) and message.tag
        ]
        if not tags and room <= 0:
            return []
        items = await self._settle_and_take(
            keys=[self.name, UNACKED, UNACKED_INDEX], args=[room, time.time(), *tags]
        )
        return [parse(item) for item in items]

    async def depth(self) -> int | None:
        return int(await self._client.llen(self.name))

    async def give_back(self, messages: Sequence[TakenMessage]) -> None:
        """Put messages that were not run back at the head of the queue, unchanged."""
        recorded = [m for m in messages if isinstance(m, RedisMessage) and m.tag is not None]
        tags = [message.tag for message in recorded if message.tag is not None]
        if not tags:
            return
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.rpush(self.name, *(message.item for message in reversed(recorded)))
            pipe.zrem(UNACKED_INDEX, *tags)
            pipe.hdel(UNACKED, *tags)
            await pipe.execute()

    def housekeeping(self) -> None:
        """Declare the queue (for publishers that do not), then restore, every few seconds,
        the unacknowledged messages of workers dead for longer than the visibility timeout.
        kombu's own code does both; it is synchronous, hence a thread, which sleeps."""
        options = self._app.conf.broker_transport_options
        interval = float(options.get("unacked_restore_interval", 10))
        declared = False
        while True:
            try:
                with self._app.connection_for_write() as connection:
                    channel = connection.default_channel
                    if not declared:
                        queue_of(self._app, self.name)(channel).declare()
                        declared = True
                    channel.qos.restore_visible(num=None)  # type: ignore[attr-defined]
            except _BROKER_DOWN as error:
                log.warning("could not restore unacknowledged checks: %s", error)
            if self._closed.wait(interval):
                return

    def close(self) -> None:
        self._closed.set()
