"""Why a probe failed: a small closed set of kinds, each with the phase it happened in."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from smtp_checks.shared.probe.phases import Phase
from smtp_checks.shared.sanitize import sanitize


class FailureKind(StrEnum):
    DNS = "dns"  # the host name does not resolve
    REFUSED = "refused"  # nothing listens on the port
    NETWORK = "network"  # other socket errors: unreachable, reset, closed by the server
    TIMEOUT = "timeout"  # the check's deadline passed
    TLS = "tls"  # STARTTLS unavailable or refused, handshake failed
    CERTIFICATE = "certificate"  # the server's certificate did not verify
    AUTH = "auth"  # authentication impossible or rejected
    REJECTED = "rejected"  # the server answered a command with an error code
    PROTOCOL = "protocol"  # the server does not speak SMTP as it should
    UNEXPECTED = "unexpected"  # a reply did not match what the check expects (expect, response)


@dataclass(frozen=True)
class ProbeFailure:
    """A classified failure. `detail` is already sanitised: safe to show anywhere."""

    kind: FailureKind
    phase: Phase
    detail: str
    reply_code: int | None = None

    @classmethod
    def make(
        cls, kind: FailureKind, phase: Phase, detail: str | bytes, reply_code: int | None = None
    ) -> ProbeFailure:
        return cls(kind=kind, phase=phase, detail=sanitize(detail), reply_code=reply_code)
