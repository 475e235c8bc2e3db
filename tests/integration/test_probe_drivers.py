"""The two drivers of the one SMTP session (asyncio for workers, a blocking socket for the
CLI) give the same result for the same bytes: on the same real servers, hostile ones
included, and the deadline holds in each."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from smtp_checks.shared.probe import asyncio_driver, socket_driver
from smtp_checks.shared.probe.failures import FailureKind
from smtp_checks.shared.probe.result import ProbeResult
from smtp_checks.shared.probe.spec import (
    Credentials,
    MessageSpec,
    Mode,
    ProbeSpec,
    TlsMode,
    TlsSettings,
)
from tests.smtp_servers import (
    RAW_SCENARIOS,
    TEST_PASSWORD,
    TEST_USER,
    Pki,
    RawScenario,
    ServerPool,
    refused_port,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

TIMEOUT = 1.5
MESSAGE = MessageSpec(sender="monitor@example.com", to=("probe@example.net",))


def both(spec: ProbeSpec) -> tuple[ProbeResult, ProbeResult]:
    """The same spec through each driver, one after the other."""
    through_asyncio = asyncio.run(asyncio_driver.run_probe(spec))
    through_socket = socket_driver.run_probe(spec)
    return through_asyncio, through_socket


def same(first: ProbeResult, second: ProbeResult) -> None:
    """Everything but the timings (and the TLS session's days to expiry, a clock reading)."""
    assert first.failure == second.failure
    assert set(first.phase_times) == set(second.phase_times)
    assert (first.tls is None) == (second.tls is None)
    if first.tls is not None and second.tls is not None:
        assert (first.tls.version, first.tls.cipher) == (second.tls.version, second.tls.cipher)
    assert first.transcript == second.transcript


@dataclass(frozen=True)
class Case:
    server: dict[str, Any]  # ServerPool.smtp arguments
    spec: dict[str, Any]  # ProbeSpec arguments beyond host and port
    kind: FailureKind | None  # what both must say


def cases(pki: Pki) -> dict[str, Case]:
    tls = {"tls_context": pki.server_context("trusted")}
    trusted = TlsSettings(TlsMode.STARTTLS, ca_file=str(pki.ca_pem_path))
    auth = {"username": TEST_USER, "password": TEST_PASSWORD}
    return {
        "plain login": Case({}, {"tls": TlsSettings(TlsMode.NONE)}, None),
        "starttls": Case({"tls": "starttls", **tls}, {"tls": trusted}, None),
        "implicit tls": Case(
            {"tls": "ssl", **tls},
            {"tls": TlsSettings(TlsMode.IMPLICIT, ca_file=str(pki.ca_pem_path))},
            None,
        ),
        "untrusted certificate": Case(
            {"tls": "starttls", **tls},
            {"tls": TlsSettings(TlsMode.STARTTLS)},
            FailureKind.CERTIFICATE,
        ),
        "auth": Case(
            {"tls": "starttls", **tls, **auth},
            {"tls": trusted, "credentials": Credentials(TEST_USER, TEST_PASSWORD)},
            None,
        ),
        "wrong password": Case(
            {"tls": "starttls", **tls, **auth},
            {"tls": trusted, "credentials": Credentials(TEST_USER, "wrong")},
            FailureKind.AUTH,
        ),
        "no starttls offered": Case({}, {"tls": TlsSettings(TlsMode.STARTTLS)}, FailureKind.TLS),
        "banner refused": Case(
            {"banner_reply": "554 5.3.2 Service unavailable"},
            {"tls": TlsSettings(TlsMode.NONE)},
            FailureKind.REJECTED,
        ),
        "message sent": Case({}, {"tls": TlsSettings(TlsMode.NONE), "mode": Mode.MESSAGE}, None),
        "recipient refused": Case(
            {"rcpt_reply": "550 5.1.1 <probe@example.net>: Recipient address rejected"},
            {"tls": TlsSettings(TlsMode.NONE), "mode": Mode.MESSAGE},
            FailureKind.REJECTED,
        ),
        "slow server": Case(
            {"command_delay": 3.0}, {"tls": TlsSettings(TlsMode.NONE)}, FailureKind.TIMEOUT
        ),
    }


@pytest.mark.parametrize(
    "name",
    [
        "plain login",
        "starttls",
        "implicit tls",
        "untrusted certificate",
        "auth",
        "wrong password",
        "no starttls offered",
        "banner refused",
        "message sent",
        "recipient refused",
        "slow server",
    ],
)
def test_both_drivers_say_the_same_of_a_real_server(
    server_pool: ServerPool, pki: Pki, name: str
) -> None:
    case = cases(pki)[name]
    server = server_pool.smtp(**case.server)
    message = MESSAGE if case.spec.get("mode") is Mode.MESSAGE else None
    spec = ProbeSpec(
        host=server.host,
        port=server.port,
        timeout=TIMEOUT,
        message=message,
        record_transcript=True,
        **case.spec,
    )
    first, second = both(spec)
    same(first, second)
    assert (first.failure.kind if first.failure else None) == case.kind


@pytest.mark.parametrize("scenario", RAW_SCENARIOS)
def test_both_drivers_say_the_same_of_a_hostile_server(
    raw_server_factory: Callable[..., Any], scenario: RawScenario
) -> None:
    server = raw_server_factory(scenario, drip_interval=0.2)
    spec = ProbeSpec(
        host=server.host, port=server.port, tls=TlsSettings(TlsMode.NONE), timeout=TIMEOUT,
        mode=Mode.MESSAGE, message=MESSAGE, record_transcript=True,
    )  # fmt: skip
    started = time.monotonic()
    first, second = both(spec)
    elapsed = time.monotonic() - started
    same(first, second)
    # Whatever the server does, each check ends by its deadline (a second of slack for two).
    assert elapsed < 2 * TIMEOUT + 1.0
    for result in (first, second):
        assert result.time <= TIMEOUT + 0.5


def test_both_drivers_say_the_same_of_a_closed_port_and_an_unknown_name() -> None:
    for host, port, kind in (
        ("127.0.0.1", refused_port(), FailureKind.REFUSED),
        ("no-such-host.invalid", 25, FailureKind.DNS),
        ("x" * 300, 25, FailureKind.DNS),  # a label the resolver refuses: not a hang
    ):
        spec = ProbeSpec(host=host, port=port, tls=TlsSettings(TlsMode.NONE), timeout=TIMEOUT)
        first, second = both(spec)
        same(first, second)
        assert first.failure is not None and first.failure.kind is kind
