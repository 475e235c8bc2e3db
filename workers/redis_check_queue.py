"""A site's check queue on Redis, read in batches from the event loop, at least once.

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
import time
from dataclasses import dataclass
from typing import Any, Final

import redis.asyncio
from kombu import serialization
from kombu.transport.redis import Channel as KombuRedisChannel

from smtp_checks.workers.check_runner import task_payload

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


@dataclass(frozen=True)
class Delivery:
    """One message taken from the queue. `request` is what the check runner validates;
    `refusal` says why the message must not run at all (not JSON, not a kombu message)."""

    item: bytes  # the message as it sat on the list
    tag: str | None  # kombu's delivery tag, the key of its unacked record
    request: object
    redelivered: bool
    refusal: str | None = None


def parse(item: bytes) -> Delivery:
    """A message of the list as a Delivery; never raises."""
    try:
        envelope = json.loads(item)
    except ValueError:
        envelope = None
    properties = _field(envelope, "properties")
    tag = _field(properties, "delivery_tag")
    if not isinstance(tag, str):
        return Delivery(item, None, None, False, "not a kombu message")
    redelivered = bool(_field(_field(properties, "delivery_info"), "redelivered"))
    content_type = _field(envelope, "content-type")
    if content_type != "application/json":
        name = serialization.registry.type_to_name.get(  # type: ignore[attr-defined]
            str(content_type), "unknown"
        )
        refusal = f"content type {content_type!r} ({name}): only JSON is accepted"
        return Delivery(item, tag, None, redelivered, refusal)
    try:
        body = _field(envelope, "body")
        if _field(properties, "body_encoding") == "base64":
            body = base64.b64decode(body)
        decoded: Any = json.loads(body)
    except (ValueError, TypeError, binascii.Error) as error:
        return Delivery(item, tag, None, redelivered, f"undecodable body ({error})")
    task = _field(_field(envelope, "headers"), "task")
    return Delivery(item, tag, task_payload(task, decoded), redelivered)


def _field(value: object, name: str) -> Any:
    return value.get(name) if isinstance(value, dict) else None


class RedisCheckQueue:
    def __init__(self, client: redis.asyncio.Redis, queue: str) -> None:
        self._client = client
        self.name = queue
        self._settle_and_take = client.register_script(_SETTLE_AND_TAKE)

    async def settle_and_take(self, acks: list[str], count: int) -> list[Delivery]:
        """Acknowledge the messages of `acks` (delivery tags), then take up to `count` new
        ones, oldest first, each recorded as unacknowledged; one round trip."""
        if not acks and count <= 0:
            return []
        items = await self._settle_and_take(
            keys=[self.name, UNACKED, UNACKED_INDEX], args=[count, time.time(), *acks]
        )
        return [parse(item) for item in items]

    async def give_back(self, deliveries: list[Delivery]) -> None:
        """Put messages that were not run back at the head of the queue, unchanged."""
        recorded = [delivery for delivery in deliveries if delivery.tag is not None]
        tags = [delivery.tag for delivery in recorded if delivery.tag is not None]
        if not tags:
            return
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.rpush(self.name, *(delivery.item for delivery in reversed(recorded)))
            pipe.zrem(UNACKED_INDEX, *tags)
            pipe.hdel(UNACKED, *tags)
            await pipe.execute()
