"""The worker's per-site rate limit, on a clock the test moves."""

from __future__ import annotations

from smtp_checks.workers.rate_limit import RateLimit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_no_limit_grants_everything() -> None:
    assert RateLimit(None).take(500) == 500


def test_without_burst_starts_are_one_interval_apart() -> None:
    clock = Clock()
    rate = RateLimit("2/s", clock=clock)
    assert rate.take(10) == 1
    clock.now += 0.25
    assert rate.take(10) == 0
    clock.now += 0.25
    assert rate.take(10) == 1


def test_a_poller_gets_what_accrued_since_it_last_looked_up_to_the_burst() -> None:
    clock = Clock()
    rate = RateLimit("4/s", burst=1.0, clock=clock)  # binary fractions: exact arithmetic
    assert rate.take(100) == 5  # the start due now and a burst's worth (1 s at 4/s)
    assert rate.take(100) == 0
    clock.now += 0.75  # the next was due at +0.25: that one and two more since
    assert rate.take(100) == 3
    clock.now += 10.0  # idle for long: still no more than the burst's worth at once
    assert rate.take(100) == 5
    assert rate.take(2) == 0


def test_unused_starts_are_refunded() -> None:
    clock = Clock()
    rate = RateLimit("1/s", clock=clock)
    granted = rate.take(1)
    rate.refund(granted)  # the queue was empty: nothing started
    assert rate.take(1) == 1  # no need to wait a second for the next message
