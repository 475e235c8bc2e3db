"""The schedule math: stable phases, evenly spaced slots, spread across the interval."""

from __future__ import annotations

import math
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtp_checks.scheduler.schedule import Cadence, phase_fraction

check_ids = st.text(min_size=1, max_size=60)
intervals = st.integers(min_value=1, max_value=86_400)
# Up to the year 2100, with sub-second precision.
instants = st.floats(min_value=0, max_value=4.1e9, allow_nan=False, allow_infinity=False)


@given(check_ids, intervals)
def test_phase_is_inside_the_interval(check_id: str, interval: int) -> None:
    cadence = Cadence(check_id, interval)
    assert 0 <= cadence.phase < interval


@given(check_ids, intervals)
def test_phase_is_the_same_for_the_same_check(check_id: str, interval: int) -> None:
    assert Cadence(check_id, interval).phase == Cadence(check_id, interval).phase


def test_phase_does_not_depend_on_the_process() -> None:
    # Python's own hash() of a str changes with every process (PYTHONHASHSEED).
    code = "from smtp_checks.scheduler.schedule import phase_fraction; print(phase_fraction('mx1/login'))"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert outputs == {repr(phase_fraction("mx1/login"))}


@given(check_ids, intervals, instants)
def test_latest_slot_is_the_last_start_at_or_before_now(
    check_id: str, interval: int, now: float
) -> None:
    cadence = Cadence(check_id, interval)
    latest = cadence.latest_slot(now)
    following = cadence.next_slot(now)
    assert latest.scheduled_for <= now < following.scheduled_for
    assert following.index == latest.index + 1


@given(check_ids, intervals, st.integers(min_value=0, max_value=10**8))
def test_slots_are_one_interval_apart_and_stale_at_the_next(
    check_id: str, interval: int, index: int
) -> None:
    cadence = Cadence(check_id, interval)
    slot, following = cadence.slot(index), cadence.slot(index + 1)
    assert math.isclose(following.scheduled_for - slot.scheduled_for, interval, abs_tol=1e-6)
    assert slot.stale_at == pytest.approx(following.scheduled_for, abs=1e-6)
    assert slot.check_id == check_id


@given(check_ids, intervals, instants, st.floats(min_value=0, max_value=1e6))
def test_at_most_one_run_is_owed_after_any_gap(
    check_id: str, interval: int, down_at: float, downtime: float
) -> None:
    # Whatever the gap, the run owed on return is the latest slot, and it is not yet stale.
    cadence = Cadence(check_id, interval)
    back = down_at + downtime
    owed = cadence.latest_slot(back)
    assert owed.scheduled_for <= back < owed.stale_at


def test_ten_thousand_checks_spread_over_the_minute() -> None:
    starts = Counter(
        math.floor(Cadence(f"mx{n}.example.com/login", 60).phase) for n in range(10_000)
    )
    mean = 10_000 / 60
    assert len(starts) == 60  # every second of the minute is used
    assert max(starts.values()) < 1.5 * mean
    assert min(starts.values()) > 0.5 * mean


def test_a_check_keeps_its_phase_across_restarts() -> None:
    # Epoch-aligned: any process computes the same slot times for the same check.
    cadence = Cadence("mx1/login", 60)
    restarted = Cadence("mx1/login", 60)
    assert cadence.latest_slot(1_800_000_000.0) == restarted.latest_slot(1_800_000_000.0)
    assert cadence.slot(0).scheduled_for == cadence.phase


def test_login_and_message_of_a_host_have_their_own_phases() -> None:
    assert Cadence("mx1/login", 300).phase != Cadence("mx1/message", 300).phase


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Cadence("mx1/login", 0)
