"""Passive results for the forwarder and outbox tests: a run's identity made up around the
only parts Centreon reads (host and service)."""

from __future__ import annotations

from smtp_checks.consumer.forwarders.base import Kind, PassiveResult
from smtp_checks.shared.identity import CheckIdentity
from smtp_checks.shared.probe.spec import Mode


def passive(
    host: str,
    service: str,
    status: int,
    output: str,
    perfdata: str = "",
    check_time: float = 1.0,
    kind: Kind = "change",
) -> PassiveResult:
    identity = CheckIdentity(
        check_id=f"{host}/login", host=host, service=service, site="paris", mode=Mode.LOGIN,
        run_id=f"run-{host}-{check_time}", scheduled_for=check_time, stale_at=check_time + 60,
    )  # fmt: skip
    return PassiveResult(identity, status, output, perfdata, check_time, kind)
