"""After a gap, the beat does not enqueue a slot too close to its stale time to run."""

from __future__ import annotations

from smtp_checks.scheduler.beat import _too_late
from smtp_checks.scheduler.schedule import Cadence
from smtp_checks.shared.config import parse_config


def test_a_nearly_stale_slot_is_skipped_and_a_fresh_one_is_not() -> None:
    config = parse_config({
        "sites": {"paris": {}},
        "hosts": [{"name": "mx1", "address": "192.0.2.1", "site": "paris",
                   "checks": {"login": {"interval": 60, "timeout": 10}}}],
    })  # fmt: skip
    check = config.scheduled_checks()[0]
    slot = Cadence(check.check_id, check.interval).latest_slot(1_800_000_000.0)
    assert not _too_late(check, slot, slot.scheduled_for + 0.05)  # on time: the steady state
    assert not _too_late(check, slot, slot.stale_at - 6)  # 6 s left: a 10 s check may run
    assert _too_late(check, slot, slot.stale_at - 4)  # 4 s left: wait for the next slot
