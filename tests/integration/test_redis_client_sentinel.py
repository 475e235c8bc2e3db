"""The one client factory (shared/redis_client.py) behind a real Redis Sentinel group.

Each role's client, sync and async (the worker's blocking pool too), finds the master
through the sentinels, follows a SIGKILLed master to the promoted replica by itself (after
`REDIS_DOWN` errors while there is no master), and runs its Lua scripts on the new master,
which has never seen them (NOSCRIPT, then the script sent again), directly and in a
transaction. With passwords: the master's in the URL, the sentinels' as a secret reference.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from smtp_checks.shared.config import parse_config
from smtp_checks.shared.errors import SetupError
from smtp_checks.shared.redis_client import (
    REDIS_DOWN,
    RedisAddress,
    connect,
    connect_async,
    state_redis,
)
from tests.sentinel import SentinelGroup

pytestmark = pytest.mark.integration

INCREMENT = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


@pytest.fixture
def group() -> Iterator[SentinelGroup]:
    with SentinelGroup(password="master-secret", sentinel_password="sentinel-secret") as started:
        yield started


def address(group: SentinelGroup, monkeypatch: pytest.MonkeyPatch) -> RedisAddress:
    monkeypatch.setenv("TEST_SENTINEL_PASSWORD", group.sentinel_password or "")
    config = parse_config(
        {
            "broker_url": group.sentinel_url(db=3),
            "sentinel_master": group.master_name,
            "sentinel_password": "env:TEST_SENTINEL_PASSWORD",
            "sites": {"paris": {}},
            "hosts": [],
        }
    )
    found = state_redis(config)
    assert found is not None and found.behind_sentinel
    return found


def until_it_works(call: Any, timeout: float = 30.0) -> Any:
    """`call()` retried while Redis is down (as every role's backoff does)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except REDIS_DOWN:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_a_sync_client_follows_the_failover_and_reloads_its_scripts(
    group: SentinelGroup, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = connect(address(group, monkeypatch))
    script = client.register_script(INCREMENT)
    assert script(keys=["n"], args=[1]) == 1
    with group.client(group.current_master(), db=3) as direct:
        assert direct.get("n") == "1"  # the URL's database, on the master
    group.wait_for_replica_sync()
    group.kill_master()
    promotion = group.wait_for_promotion()
    assert until_it_works(lambda: script(keys=["n"], args=[1])) == 2
    with group.client(promotion.address, db=3) as direct:
        assert direct.get("n") == "2"
        assert direct.script_exists(script.sha) == [True]  # sent again after NOSCRIPT

    def in_a_transaction() -> Any:
        with client.pipeline(transaction=True) as pipe:
            script(keys=["n"], args=[10], client=pipe)
            return pipe.execute()

    assert until_it_works(in_a_transaction) == [12]
    client.close()


def test_an_async_client_with_a_blocking_pool_follows_the_failover(
    group: SentinelGroup, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        client = connect_async(address(group, monkeypatch), max_connections=4)
        script = client.register_script(INCREMENT)
        # More calls at once than connections: they wait for one, none fails.
        assert sorted(
            await asyncio.gather(*(script(keys=["a"], args=[1]) for _ in range(20)))
        ) == list(range(1, 21))
        group.wait_for_replica_sync()
        group.kill_master()
        promotion = group.wait_for_promotion()
        deadline = time.monotonic() + 30
        while True:
            try:
                value = await script(keys=["a"], args=[1])
                break
            except REDIS_DOWN:
                assert time.monotonic() < deadline, "the async client never reached the new master"
                await asyncio.sleep(0.1)
        assert value == 21
        with group.client(promotion.address, db=3) as direct:
            assert direct.get("a") == "21"
        await client.aclose()

    asyncio.run(scenario())


def test_a_half_configured_sentinel_is_a_setup_error_naming_what_is_missing() -> None:
    url = "sentinel://127.0.0.1:1;sentinel://127.0.0.1:2/0"
    with pytest.raises(SetupError, match="sentinel_master"):
        connect(RedisAddress(url))
    with pytest.raises(SetupError, match=r"part 2 .* must start with sentinel://"):
        connect(RedisAddress("sentinel://127.0.0.1:1;redis://127.0.0.1:2", "mymaster"))


def test_a_wrong_sentinel_password_is_refused_and_never_shown(
    group: SentinelGroup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_WRONG", "not-the-password")
    client = connect(RedisAddress(group.sentinel_url(), group.master_name, "env:TEST_WRONG"))
    with pytest.raises(redis.RedisError) as caught:
        client.ping()
    assert "not-the-password" not in str(caught.value)
    assert "master-secret" not in str(caught.value)
