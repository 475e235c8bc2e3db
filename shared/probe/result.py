"""What the probe measured: total time, time per phase, TLS details, or a classified failure."""

from __future__ import annotations

from dataclasses import dataclass, field

from smtp_checks.shared.probe.failures import ProbeFailure
from smtp_checks.shared.probe.phases import Phase


@dataclass(frozen=True)
class TlsInfo:
    version: str  # e.g. TLSv1.3
    cipher: str
    cert_days_left: float | None  # None when the certificate could not be read
    # The earliest expiry among the certificates the server sent (leaf and intermediates).
    chain_days_left: float | None = None


@dataclass(frozen=True)
class RelayAnswer:
    """The reply to a relay test's RCPT TO: a refusal is what a closed relay gives."""

    recipient: str
    code: int
    reply: str  # sanitised: code and text, as the server sent them

    @property
    def accepted(self) -> bool:
        return 200 <= self.code < 300


@dataclass(frozen=True)
class ProbeResult:
    """`time` is the plugin's measure: from before the connection is opened to after QUIT
    (or to the failure). It never includes time spent waiting before the probe started."""

    time: float
    phase_times: dict[Phase, float] = field(default_factory=dict)
    failure: ProbeFailure | None = None
    tls: TlsInfo | None = None
    transcript: tuple[str, ...] = ()
    relay: RelayAnswer | None = None  # mode relay, once RCPT TO was answered
    # Seconds from the start to the server's acceptance of the message (the end of DATA):
    # where a round trip's delivery time starts.
    sent_after: float | None = None
    # The address the host's name resolved to and was connected to (or the last one tried,
    # when none answered); None for a host given as an address.
    address: str | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None
