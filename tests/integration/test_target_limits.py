"""Per-target limits against the real Redis (database 13): concurrency, rate, leases, failures."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from smtp_checks.shared.keys import Keys
from smtp_checks.workers.target_limits import (
    LimiterUnavailable,
    PermitTimeout,
    TargetLimiter,
    TargetLimits,
)
from tests.smtp_servers import LOOPBACK, refused_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(20)]

TARGET = "192.0.2.10:25"
OTHER_TARGET = "192.0.2.11:25"
LEASE = 5.0


def run(scenario: Callable[[redis.asyncio.Redis], Awaitable[None]], url: str) -> None:
    """Run `scenario` with a fresh client in a fresh event loop."""

    async def main() -> None:
        client = redis.asyncio.Redis.from_url(url)
        try:
            await scenario(client)
        finally:
            await client.aclose()

    asyncio.run(main())


def deadline_in(seconds: float) -> float:
    return time.monotonic() + seconds


class Holders:
    """Counts current permit holders across threads and remembers the peak."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current = 0
        self.peak = 0
        self.completed = 0

    def enter(self) -> None:
        with self._lock:
            self.current += 1
            self.peak = max(self.peak, self.current)

    def leave(self) -> None:
        with self._lock:
            self.current -= 1
            self.completed += 1


def test_concurrency_never_exceeds_max_across_two_event_loops(redis_url: str) -> None:
    limits = TargetLimits(max_concurrent=3, max_per_minute=1000)
    holders = Holders()
    per_loop = 20
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    async def one(limiter: TargetLimiter) -> None:
        async with limiter.permit(TARGET, deadline=deadline_in(8), lease=LEASE):
            holders.enter()
            try:
                await asyncio.sleep(0.02)
            finally:
                holders.leave()

    async def contend(client: redis.asyncio.Redis) -> None:
        limiter = TargetLimiter(client, limits)
        await client.ping()  # connect before the race starts
        start.wait()
        await asyncio.gather(*(one(limiter) for _ in range(per_loop)))

    def thread_main() -> None:
        try:
            run(contend, redis_url)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=thread_main) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=15)

    assert errors == []
    assert holders.completed == 2 * per_loop
    assert holders.peak == limits.max_concurrent  # reached, never exceeded

    async def check_idle(client: redis.asyncio.Redis) -> None:
        assert await TargetLimiter(client, limits).in_use(TARGET) == 0

    run(check_idle, redis_url)


def test_requests_of_one_loop_turn_are_decided_in_order_per_target(redis_url: str) -> None:
    # Requests made together go to Redis in one script; each target keeps its own limit
    # inside it, and those refused get their permit once a holder releases.
    limits = TargetLimits(max_concurrent=1, max_per_minute=1000)
    order: list[str] = []

    async def one(limiter: TargetLimiter, target: str, name: str) -> None:
        async with limiter.permit(target, deadline=deadline_in(8), lease=LEASE):
            order.append(f"{name} in")
            await asyncio.sleep(0.05)
            order.append(f"{name} out")

    async def scenario(client: redis.asyncio.Redis) -> None:
        limiter = TargetLimiter(client, limits)
        await asyncio.gather(
            one(limiter, TARGET, "a1"),
            one(limiter, OTHER_TARGET, "b1"),
            one(limiter, TARGET, "a2"),
            one(limiter, OTHER_TARGET, "b2"),
        )
        assert await limiter.in_use(TARGET) == 0 and await limiter.in_use(OTHER_TARGET) == 0

    run(scenario, redis_url)

    assert order[:2] == ["a1 in", "b1 in"]  # the first of each target, at once
    for first, second in (("a1", "a2"), ("b1", "b2")):
        assert order.index(f"{first} out") < order.index(f"{second} in")


def test_per_minute_cap_times_out_at_deadline(redis_url: str) -> None:
    limits = TargetLimits(max_concurrent=10, max_per_minute=3)

    async def scenario(client: redis.asyncio.Redis) -> None:
        limiter = TargetLimiter(client, limits)
        for _ in range(3):
            async with limiter.permit(TARGET, deadline=deadline_in(1), lease=LEASE) as waited:
                assert waited < 0.1
        began = time.monotonic()
        deadline = began + 0.3
        with pytest.raises(PermitTimeout) as info:
            async with limiter.permit(TARGET, deadline=deadline, lease=LEASE):
                pytest.fail("a 4th session within the minute got a permit")
        ended = time.monotonic()
        assert ended >= deadline  # waited until the deadline ...
        assert ended - deadline < 0.1  # ... and not past it
        message = str(info.value)
        assert TARGET in message
        assert "10 concurrent sessions" in message
        assert "3 new sessions per minute" in message
        assert "rate limit" in message
        assert info.value.target == TARGET
        assert info.value.limits == limits
        # Another target has its own window.
        async with limiter.permit(OTHER_TARGET, deadline=deadline_in(1), lease=LEASE) as waited:
            assert waited < 0.1

    run(scenario, redis_url)


def test_concurrency_timeout_message(redis_url: str) -> None:
    limits = TargetLimits(max_concurrent=1, max_per_minute=30)

    async def scenario(client: redis.asyncio.Redis) -> None:
        limiter = TargetLimiter(client, limits)
        async with limiter.permit(TARGET, deadline=deadline_in(1), lease=LEASE):
            with pytest.raises(PermitTimeout) as info:
                async with limiter.permit(TARGET, deadline=deadline_in(0.1), lease=LEASE):
                    pytest.fail("a 2nd concurrent session got a permit")
        assert str(info.value).startswith(f"no permit for target {TARGET} after waiting 0.1")
        assert "at most 1 concurrent sessions and 30 new sessions per minute" in str(info.value)
        assert "concurrency limit" in str(info.value)

    run(scenario, redis_url)


def test_dead_holder_permit_expires_after_its_lease(redis_url: str) -> None:
    limits = TargetLimits(max_concurrent=2, max_per_minute=100)
    lease = 0.3

    async def scenario(client: redis.asyncio.Redis) -> None:
        dead_worker = TargetLimiter(client, limits)
        held = dead_worker.permit(TARGET, deadline=deadline_in(1), lease=lease)
        await held.__aenter__()  # acquired, never released: its worker "died"
        assert await dead_worker.in_use(TARGET) == 1

        other_client = redis.asyncio.Redis.from_url(redis_url)
        try:
            other_worker = TargetLimiter(other_client, limits)
            # A live holder with a long lease keeps the key alive: only the purge frees the slot.
            async with (
                other_worker.permit(TARGET, deadline=deadline_in(1), lease=LEASE),
                other_worker.permit(TARGET, deadline=deadline_in(2), lease=LEASE) as waited,
            ):
                assert lease - 0.05 <= waited < lease + 0.3
                assert await other_worker.in_use(TARGET) == 2
                # A late release of the expired permit is harmless: it removes only its own.
                await held.__aexit__(None, None, None)
                assert await other_worker.in_use(TARGET) == 2
            assert await other_worker.in_use(TARGET) == 0
        finally:
            await other_client.aclose()

    run(scenario, redis_url)


def test_released_on_exception(redis_url: str) -> None:
    async def scenario(client: redis.asyncio.Redis) -> None:
        limiter = TargetLimiter(client, TargetLimits(max_concurrent=1, max_per_minute=100))
        with pytest.raises(RuntimeError, match="probe blew up"):
            async with limiter.permit(TARGET, deadline=deadline_in(1), lease=LEASE):
                assert await limiter.in_use(TARGET) == 1
                raise RuntimeError("probe blew up")
        assert await limiter.in_use(TARGET) == 0
        async with limiter.permit(TARGET, deadline=deadline_in(1), lease=LEASE) as waited:
            assert waited < 0.1

    run(scenario, redis_url)


def test_released_on_cancellation_while_holding_and_while_waiting(redis_url: str) -> None:
    async def scenario(client: redis.asyncio.Redis) -> None:
        limiter = TargetLimiter(client, TargetLimits(max_concurrent=1, max_per_minute=100))
        _, starts = limiter.keys(TARGET)
        entered = asyncio.Event()

        async def holder() -> None:
            async with limiter.permit(TARGET, deadline=deadline_in(1), lease=LEASE):
                entered.set()
                await asyncio.sleep(3600)

        async def waiter() -> None:
            async with limiter.permit(TARGET, deadline=deadline_in(5), lease=LEASE):
                pytest.fail("the waiter got a permit while the holder held it")

        holding = asyncio.create_task(holder())
        await entered.wait()
        waiting = asyncio.create_task(waiter())
        await asyncio.sleep(0.1)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert await limiter.in_use(TARGET) == 1  # the waiter left nothing behind
        assert await client.zcard(starts) == 1

        holding.cancel()
        with pytest.raises(asyncio.CancelledError):
            await holding
        assert await limiter.in_use(TARGET) == 0

    run(scenario, redis_url)


def test_waited_seconds_are_reported(redis_url: str) -> None:
    async def scenario(client: redis.asyncio.Redis) -> None:
        limiter = TargetLimiter(client, TargetLimits(max_concurrent=1, max_per_minute=100))
        waits: dict[str, float] = {}

        async def first() -> None:
            async with limiter.permit(TARGET, deadline=deadline_in(1), lease=LEASE) as waited:
                waits["first"] = waited
                await asyncio.sleep(0.2)

        async def second() -> None:
            await asyncio.sleep(0.01)
            async with limiter.permit(TARGET, deadline=deadline_in(2), lease=LEASE) as waited:
                waits["second"] = waited

        await asyncio.gather(first(), second())
        assert 0 <= waits["first"] < 0.05
        assert 0.15 <= waits["second"] < 0.5

    run(scenario, redis_url)


def test_keys_carry_ttls_and_idle_target_leaves_only_expiring_window(redis_url: str) -> None:
    async def scenario(client: redis.asyncio.Redis) -> None:
        limiter = TargetLimiter(
            client, TargetLimits(max_concurrent=2, max_per_minute=10), keys=Keys("t:")
        )
        sessions, starts = limiter.keys(TARGET)
        assert (sessions, starts) == (f"t:target:{TARGET}:sessions", f"t:target:{TARGET}:starts")
        async with limiter.permit(TARGET, deadline=deadline_in(1), lease=LEASE):
            assert 0 < await client.pttl(sessions) <= LEASE * 1000
            assert 0 < await client.pttl(starts) <= 60_000
        assert await client.exists(sessions) == 0
        assert 0 < await client.pttl(starts) <= 60_000
        assert await client.keys("*") == [starts.encode()]

    run(scenario, redis_url)


def test_unavailable_when_redis_refuses_connections() -> None:
    async def scenario() -> None:
        client = redis.asyncio.Redis(
            host=LOOPBACK, port=refused_port(), retry=Retry(NoBackoff(), 0)
        )
        try:
            limiter = TargetLimiter(client, TargetLimits(max_concurrent=1, max_per_minute=1))
            began = time.monotonic()
            with pytest.raises(LimiterUnavailable) as info:
                async with limiter.permit(TARGET, deadline=deadline_in(2), lease=LEASE):
                    pytest.fail("got a permit without Redis")
            assert time.monotonic() - began < 0.5
            assert TARGET in str(info.value)
            assert "Redis failed: ConnectionError" in str(info.value)
            with pytest.raises(LimiterUnavailable):
                await limiter.in_use(TARGET)
        finally:
            await client.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize("server", ["refusing", "silent"])
def test_unavailable_redis_never_holds_past_the_deadline(server: str) -> None:
    """With the client's default retries (refusing) or no reply at all (silent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen()  # accepts into the backlog, never answers
        port = listener.getsockname()[1] if server == "silent" else refused_port()

        async def scenario() -> None:
            client = redis.asyncio.Redis(host=LOOPBACK, port=port)
            try:
                limiter = TargetLimiter(client, TargetLimits(max_concurrent=1, max_per_minute=1))
                deadline = deadline_in(0.3)
                with pytest.raises(LimiterUnavailable, match=TARGET):
                    async with limiter.permit(TARGET, deadline=deadline, lease=LEASE):
                        pytest.fail("got a permit without Redis")
                assert time.monotonic() - deadline < 0.1
            finally:
                await client.aclose()

        asyncio.run(scenario())


def test_invalid_limits_and_lease_are_refused(redis_url: str) -> None:
    with pytest.raises(ValueError, match="positive"):
        TargetLimits(max_concurrent=0, max_per_minute=1)
    with pytest.raises(ValueError, match="positive"):
        TargetLimits(max_concurrent=1, max_per_minute=0)

    async def scenario(client: redis.asyncio.Redis) -> None:
        limiter = TargetLimiter(client, TargetLimits(max_concurrent=1, max_per_minute=1))
        for lease in (0.0, -1.0, float("inf"), float("nan")):
            with pytest.raises(ValueError, match="lease"):
                async with limiter.permit(TARGET, deadline=deadline_in(1), lease=lease):
                    pytest.fail("an invalid lease got a permit")
        assert await client.keys("*") == []

    run(scenario, redis_url)
