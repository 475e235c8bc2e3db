"""The metrics plumbing: the `--metrics` address, serving errors, and what the recorders
count (read back from prometheus-client's registry, as a scrape would)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from prometheus_client import REGISTRY

from smtp_checks.consumer.metrics import ForwarderCounters
from smtp_checks.shared.errors import SetupError
from smtp_checks.shared.messages import CheckResult, Outcome
from smtp_checks.shared.metrics import parse_address, start_role_metrics
from smtp_checks.shared.probe.spec import Mode
from smtp_checks.workers.metrics import Unmeasured, WorkerMetrics


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1:9711", ("127.0.0.1", 9711)),
        (":9711", ("0.0.0.0", 9711)),
        ("[::1]:9711", ("::1", 9711)),
        ("metrics.example.com:80", ("metrics.example.com", 80)),
    ],
)
def test_metrics_addresses_are_host_and_port(text: str, address: tuple[str, int]) -> None:
    assert parse_address(text) == address


@pytest.mark.parametrize("text", ["9711", "host:", "host:http", "host:0", "host:65536", ""])
def test_a_bad_metrics_address_is_refused_with_the_form_expected(text: str) -> None:
    with pytest.raises(SetupError, match="expected HOST:PORT"):
        parse_address(text)


def test_the_command_line_refuses_a_bad_metrics_address_before_starting() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "smtp_checks.cli.main", "worker", "--config", "unread.yaml",
         "--site", "paris", "--metrics", "9711"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "argument --metrics: '9711': expected HOST:PORT" in done.stderr


def test_a_metrics_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(SetupError, match=f"cannot serve metrics on {address}: .*in use"):
            start_role_metrics("worker", address)


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _result(outcome: Outcome, *, time: float | None, site: str) -> CheckResult:
    return CheckResult.model_validate(
        {
            "identity": {"check_id": "mx/login", "host": "mx", "service": "SMTP-Login",
                         "site": site, "mode": "login", "run_id": "r", "scheduled_for": 1.0,
                         "stale_at": 61.0},
            "worker": "w", "received_at": 2.0, "ended_at": 3.0, "queue_wait": 1.0,
            "permit_wait": 0.5, "outcome": outcome, "time": time,
        }
    )  # fmt: skip


def test_a_worker_counts_each_finished_check_by_outcome_and_times_only_probes() -> None:
    metrics = WorkerMetrics("unit-a")
    metrics.started(Mode.LOGIN)
    metrics.finished(_result(Outcome.SUCCESS, time=0.25, site="unit-a"))
    metrics.finished(_result(Outcome.THROTTLED, time=None, site="unit-a"))
    metrics.finished(_result(Outcome.CREDENTIAL, time=None, site="unit-a"))
    finished = "smtp_checks_checks_finished_total"
    assert _value(finished, site="unit-a", mode="login", outcome="success") == 1
    assert _value(finished, site="unit-a", mode="login", outcome="throttled") == 1
    assert _value("smtp_checks_checks_started_total", site="unit-a", mode="login") == 1
    assert _value("smtp_checks_checks_throttled_total", site="unit-a") == 1
    assert _value("smtp_checks_credential_errors_total", site="unit-a") == 1
    assert _value("smtp_checks_probe_time_seconds_count", site="unit-a", mode="login") == 1
    assert _value("smtp_checks_probe_time_seconds_sum", site="unit-a", mode="login") == 0.25
    assert _value("smtp_checks_queue_wait_seconds_count", site="unit-a") == 3


def test_an_unmeasured_worker_records_nothing() -> None:
    metrics = Unmeasured("unit-b")
    metrics.started(Mode.LOGIN)
    metrics.finished(_result(Outcome.SUCCESS, time=0.25, site="unit-b"))
    assert _value("smtp_checks_checks_started_total", site="unit-b", mode="login") == 0
    assert _value("smtp_checks_queue_wait_seconds_count", site="unit-b") == 0


def test_forwarder_counters_become_metrics_by_what_they_grew() -> None:
    counters = ForwarderCounters("unit:forwarder")
    counters.update({"delivered": 5, "dropped_unknown": 1, "logins": 3})
    counters.update({"delivered": 7, "dropped_unknown": 1, "logins": 4})
    delivered = "smtp_checks_forwarder_delivered_total"
    assert _value(delivered, forwarder="unit:forwarder") == 7
    dropped = "smtp_checks_forwarder_dropped_total"
    assert _value(dropped, forwarder="unit:forwarder", reason="unknown") == 1
