"""The worker's batch reader of a Redis check queue, against real Redis and real kombu.

Messages are published by Celery exactly as the beat publishes them; what the reader leaves
behind is checked against what kombu itself reads (its unacknowledged records, its restore).
Redis database 15, flushed around each test.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
from celery import Celery

from smtp_checks.shared.celery_app import CHECK_TASK, check_queue, make_app
from smtp_checks.workers.sources.redis_queue import (
    UNACKED,
    UNACKED_INDEX,
    RedisMessage,
    RedisQueueSource,
)
from tests.redis_fixtures import flushed_redis_db

QUEUE_DB = 15
QUEUE = check_queue("paris")


@pytest.fixture
def broker_url() -> Iterator[str]:
    yield from flushed_redis_db(QUEUE_DB)


def celery_app(broker_url: str, *, visibility_timeout: int = 600) -> Celery:
    return make_app(broker_url, ["paris"], visibility_timeout=visibility_timeout)


def send(app: Celery, *requests: dict[str, Any], serializer: str = "json") -> None:
    for request in requests:
        app.send_task(CHECK_TASK, args=[request], queue=QUEUE, serializer=serializer)


def source(client: redis.asyncio.Redis, broker_url: str) -> RedisQueueSource:
    return RedisQueueSource(client, celery_app(broker_url), QUEUE)


def settle_and_take(broker_url: str, acks: list[str], count: int) -> list[RedisMessage]:
    """Acknowledge the messages of these delivery tags, then take up to `count`."""
    done = [RedisMessage(item=b"", tag=tag, request=None) for tag in acks]

    async def go() -> list[RedisMessage]:
        client = redis.asyncio.Redis.from_url(broker_url)
        try:
            taken = await source(client, broker_url).exchange(done, count)
            return [message for message in taken if isinstance(message, RedisMessage)]
        finally:
            await client.aclose()

    return asyncio.run(go())


def give_back(broker_url: str, deliveries: list[RedisMessage]) -> None:
    async def go() -> None:
        client = redis.asyncio.Redis.from_url(broker_url)
        try:
            await source(client, broker_url).give_back(deliveries)
        finally:
            await client.aclose()

    asyncio.run(go())


def test_takes_the_oldest_first_and_records_them_as_kombu_does(broker_url: str) -> None:
    app = celery_app(broker_url)
    send(app, *({"run_id": str(i)} for i in range(5)))
    client = redis.Redis.from_url(broker_url)

    first = settle_and_take(broker_url, [], 3)

    assert [d.request for d in first] == [{"run_id": "0"}, {"run_id": "1"}, {"run_id": "2"}]
    assert client.llen(QUEUE) == 2
    assert not any(d.redelivered or d.refusal for d in first)
    for delivery in first:
        # kombu's own record: [message, exchange, routing key], indexed by time taken.
        message, _exchange, routing_key = json.loads(client.hget(UNACKED, delivery.tag))
        assert message == json.loads(delivery.item)
        assert routing_key == QUEUE
        assert client.zscore(UNACKED_INDEX, delivery.tag) is not None

    rest = settle_and_take(broker_url, [d.tag for d in first if d.tag], 10)

    assert [d.request for d in rest] == [{"run_id": "3"}, {"run_id": "4"}]
    assert client.hlen(UNACKED) == 2 and client.zcard(UNACKED_INDEX) == 2  # only the rest
    assert settle_and_take(broker_url, [d.tag for d in rest if d.tag], 10) == []
    assert client.hlen(UNACKED) == 0 and client.zcard(UNACKED_INDEX) == 0


def test_kombu_restores_an_unacknowledged_message_as_redelivered(broker_url: str) -> None:
    # A worker died holding it: kombu's restore (any worker runs it) puts it back once the
    # visibility timeout has passed (0 here: at once), and the next taker sees the flag.
    app = celery_app(broker_url, visibility_timeout=0)
    send(app, {"run_id": "lost"})
    (taken,) = settle_and_take(broker_url, [], 10)
    assert not taken.redelivered

    with app.connection_for_write() as connection:
        connection.default_channel.qos.restore_visible(num=None)

    (again,) = settle_and_take(broker_url, [], 10)
    assert again.request == {"run_id": "lost"}
    assert again.redelivered
    assert again.tag == taken.tag


def test_given_back_messages_return_to_the_head_unchanged(broker_url: str) -> None:
    app = celery_app(broker_url)
    send(app, *({"run_id": str(i)} for i in range(3)))
    taken = settle_and_take(broker_url, [], 2)
    client = redis.Redis.from_url(broker_url)

    give_back(broker_url, taken)

    assert client.hlen(UNACKED) == 0 and client.zcard(UNACKED_INDEX) == 0
    again = settle_and_take(broker_url, [], 3)
    assert [d.request for d in again] == [{"run_id": "0"}, {"run_id": "1"}, {"run_id": "2"}]
    assert [d.item for d in again[:2]] == [d.item for d in taken]
    assert not any(d.redelivered for d in again)  # they never ran


def test_pickle_and_garbage_are_refused_unread(broker_url: str) -> None:
    app = celery_app(broker_url)
    send(app, {"run_id": "pickled"}, serializer="pickle")
    redis.Redis.from_url(broker_url).lpush(QUEUE, b"\x80not json", b'{"properties": []}')

    pickled, garbage, shapeless = settle_and_take(broker_url, [], 10)

    assert pickled.request is None and pickled.refusal is not None
    assert "pickle" in pickled.refusal and pickled.tag is not None  # acknowledged, dropped
    for delivery in (garbage, shapeless):
        assert delivery.refusal == "not a kombu message" and delivery.tag is None


def test_a_message_of_another_task_is_kept_whole_for_the_dead_letters(broker_url: str) -> None:
    app = celery_app(broker_url)
    app.send_task("someone.elses_task", args=[1, 2], queue=QUEUE)

    (delivery,) = settle_and_take(broker_url, [], 10)

    assert delivery.refusal is None
    assert isinstance(delivery.request, dict)
    assert delivery.request["task"] == "someone.elses_task"


def test_thousands_of_acknowledgements_in_one_call(broker_url: str) -> None:
    # A wave of checks ending in one tick: more tags than Lua can unpack at once.
    client = redis.Redis.from_url(broker_url)
    envelope = {"content-type": "application/json", "body": "[[{}], {}, {}]", "headers": {}}
    client.lpush(
        QUEUE,
        *(
            json.dumps({**envelope, "properties": {"delivery_tag": f"tag-{i}"}})
            for i in range(9000)
        ),
    )
    taken = settle_and_take(broker_url, [], 9000)
    assert client.hlen(UNACKED) == 9000

    assert settle_and_take(broker_url, [d.tag for d in taken if d.tag], 0) == []

    assert client.hlen(UNACKED) == 0 and client.zcard(UNACKED_INDEX) == 0
