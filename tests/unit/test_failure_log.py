"""shared/failure_log.py: an outage of hours is a few lines, however often a role retries."""

from __future__ import annotations

import logging

import pytest

from smtp_checks.shared.failure_log import FailureLog


def test_a_repeated_failure_is_logged_once_per_period_and_its_end_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr("smtp_checks.shared.failure_log.time.monotonic", lambda: now[0])
    failures = FailureLog(logging.getLogger("test.failures"), every=60.0)
    caplog.set_level(logging.DEBUG, logger="test.failures")
    for second in range(0, 130, 2):  # every 2 s for two minutes, the same error
        now[0] = 1000.0 + second
        failures.failed("refused", "Redis unavailable (%s): retrying in %.1f s", "refused", 2.0)
    failures.failed("no master", "Redis unavailable (%s)", "no master")  # another: logged
    failures.succeeded("Redis reachable again")
    failures.succeeded("Redis reachable again")  # once
    shown = [(r.levelno, r.getMessage()) for r in caplog.records if r.levelno > logging.DEBUG]
    assert shown == [
        (logging.WARNING, "Redis unavailable (refused): retrying in 2.0 s"),
        (logging.WARNING, "Redis unavailable (refused): retrying in 2.0 s"),  # at 60 s
        (logging.WARNING, "Redis unavailable (refused): retrying in 2.0 s"),  # at 120 s
        (logging.WARNING, "Redis unavailable (no master)"),
        (logging.INFO, "Redis reachable again"),
    ]
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 65 - 3
