"""The beat's leader lock and an outbox's lease across a Sentinel failover that loses the
last writes (tests/sentinel.py: the master SIGKILLed after 0.6 s its replica missed, the
lease's latest renewals among them).

Two contenders, each with its own client from the one factory, try all along, as two
beats (shared/leader.py's LeaderLock) or two consumers' deliverers (the outbox's Lease,
held from a successful hold or renewal until one fails) do. However the failover leaves
the key (gone, or older than its holder thinks), there are never two holders for longer
than a lease, and one holds it again once the new master is there.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from smtp_checks.scheduler.leader import LeaderLock
from smtp_checks.shared.lease import Lease
from smtp_checks.shared.redis_client import REDIS_DOWN, RedisAddress, connect
from tests.sentinel import SentinelGroup

pytestmark = pytest.mark.integration

TTL = 3.0
EVERY = 0.05  # seconds between two attempts of a contender


@pytest.fixture
def group() -> Iterator[SentinelGroup]:
    with SentinelGroup() as started:
        yield started


def beat(group: SentinelGroup) -> Callable[[], bool]:
    """A beat's view: may it enqueue now?"""
    address = RedisAddress(group.sentinel_url(), group.master_name)
    return LeaderLock(connect(address, socket_timeout=1.0), "test:leader", ttl=TTL).tick


def deliverer(group: SentinelGroup) -> Callable[[], bool]:
    """A deliverer's view: it delivers while its hold or renewal succeeds (it renews after
    every request, and stops at the first that fails)."""
    address = RedisAddress(group.sentinel_url(), group.master_name)
    lease = Lease(connect(address, socket_timeout=1.0), "test:outbox")
    holding = False

    def attempt() -> bool:
        nonlocal holding
        try:
            holding = lease.renew(TTL) if holding else lease.hold(TTL)
        except REDIS_DOWN:
            holding = False
        return holding

    return attempt


@pytest.mark.parametrize("contender", [beat, deliverer], ids=["beats", "outbox deliverers"])
def test_never_two_holders_longer_than_a_lease_across_a_failover(
    group: SentinelGroup, contender: Callable[[SentinelGroup], Callable[[], bool]]
) -> None:
    attempts = [contender(group), contender(group)]
    samples: list[tuple[float, bool, bool]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            held = []
            for attempt in attempts:
                try:
                    held.append(attempt())
                except REDIS_DOWN:
                    held.append(False)
            samples.append((time.monotonic(), held[0], held[1]))
            time.sleep(EVERY)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    time.sleep(1.0)
    group.wait_for_replica_sync()
    group.kill_master_unreplicated(0.6)
    promoted = group.wait_for_promotion().at
    time.sleep(TTL + 3.0)
    stop.set()
    sampler.join(5)
    both = sum(
        later[0] - sample[0]
        for sample, later in itertools.pairwise(samples)
        if sample[1] and sample[2]
    )
    assert both < TTL, f"two holders for {both:.2f} s"
    assert any(first or second for _, first, second in samples[:10])  # held before
    after = [(first, second) for at, first, second in samples if at > promoted + TTL + 1]
    assert after and all(first != second for first, second in after[-5:])  # one holder again
