"""CheckResult: what a worker measured, or why it did not run (worker -> consumer)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from smtp_checks.shared.identity import CheckIdentity, Identified
from smtp_checks.shared.mailbox.delivery import Delivery
from smtp_checks.shared.mailbox.spec import MailboxLook
from smtp_checks.shared.messages import version_1
from smtp_checks.shared.probe.failures import FailureKind, ProbeFailure
from smtp_checks.shared.probe.phases import Phase
from smtp_checks.shared.probe.result import ProbeResult, RelayAnswer, TlsInfo
from smtp_checks.shared.probe.spec import Mode
from smtp_checks.shared.sanitize import sanitize

if TYPE_CHECKING:
    from smtp_checks.shared.messages.request import CheckRequest


def _unset(value: object) -> bool:
    return value is None


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Handling:
    """How a worker handled a request, before any probing: who, when, how long it waited."""

    worker: str
    received_at: float  # epoch seconds
    queue_wait: float
    permit_wait: float = 0.0
    redelivered: bool = False


class Outcome(StrEnum):
    """How a check ended: success, a probe failure kind, or why it did not run at all."""

    SUCCESS = "success"
    DNS = FailureKind.DNS.value
    REFUSED = FailureKind.REFUSED.value
    NETWORK = FailureKind.NETWORK.value
    TIMEOUT = FailureKind.TIMEOUT.value
    TLS = FailureKind.TLS.value
    CERTIFICATE = FailureKind.CERTIFICATE.value
    AUTH = FailureKind.AUTH.value
    REJECTED = FailureKind.REJECTED.value
    PROTOCOL = FailureKind.PROTOCOL.value
    UNEXPECTED = FailureKind.UNEXPECTED.value
    STALE = "stale"  # arrived (or was redelivered) after its stale time: not run
    CREDENTIAL = "credential"  # the password reference did not resolve on the worker
    THROTTLED = "throttled"  # no per-target session permit before the deadline

    @property
    def ran(self) -> bool:
        """True when the probe talked to the server (its time and failure mean something)."""
        return self.value in _PROBE_OUTCOMES


_PROBE_OUTCOMES = frozenset({"success", *(kind.value for kind in FailureKind)})


class MailboxReport(_Message):
    """What a round trip's receive step saw in the mailbox (its outcome says whether the
    look could be made at all; its run id, which round trip it looked for)."""

    found_in: str | None = None  # the folder; None: not there (yet)
    seen_at: float | None = None  # epoch seconds
    received: tuple[float, ...] = ()  # its `Received:` dates, oldest first
    cleaned: int = 0  # leftovers of earlier runs deleted

    @field_validator("found_in")
    @classmethod
    def _sanitised(cls, value: str | None) -> str | None:
        return None if value is None else sanitize(value)


class CheckResult(Identified, _Message):
    schema_version: Literal[2] = 2
    identity: CheckIdentity  # the request's: the consumer needs nothing else to render it
    warning: str | None = None
    critical: str | None = None
    # Who ran it and when (epoch seconds).
    worker: str
    received_at: float  # the worker took the message
    started_at: float | None = None  # the probe started (after any permit wait)
    ended_at: float
    queue_wait: float  # seconds between the scheduled time and the worker taking it
    permit_wait: float = 0.0  # seconds spent waiting for a per-target permit
    redelivered: bool = False
    # What happened. `detail` is sanitised server or worker text, safe to forward.
    outcome: Outcome
    phase: Phase | None = None
    detail: str = ""
    reply_code: int | None = None
    time: float | None = None  # the plugin's `time`: connect to QUIT, never queue or permit
    phase_times: dict[Phase, float] = {}
    tls_version: str | None = None
    tls_cipher: str | None = None
    cert_days_left: float | None = None
    chain_days_left: float | None = None  # the earliest expiry of the chain the server sent
    # Mode relay: the outside recipient tried; `reply_code` and `detail` are its RCPT reply.
    relay_recipient: str | None = None
    server_address: str | None = None  # the address connected to (or the last one tried)
    # Mode roundtrip. The send step: when the server accepted the message (end of DATA).
    # The receive step: what it saw. The result the consumer joins them into: the verdict.
    # Left out of the JSON when unset: a consumer of the previous release reads the others.
    sent_at: float | None = Field(default=None, exclude_if=_unset)
    mailbox: MailboxReport | None = Field(default=None, exclude_if=_unset)
    delivery: Delivery | None = Field(default=None, exclude_if=_unset)
    # The plugin status (0-3) the worker worked out, as the consumer will: what compacting a
    # backlog of results goes by. None from a worker of version 1.
    status: int | None = Field(default=None, ge=0, le=3)

    @model_validator(mode="before")
    @classmethod
    def _version_1(cls, data: Any) -> Any:
        return version_1.upgraded(data)

    @field_validator("detail", "tls_version", "tls_cipher", "relay_recipient", "server_address")
    @classmethod
    def _sanitised(cls, value: str | None) -> str | None:
        # The worker sanitised it; a result is still network-borne text when it reaches the
        # consumer, and only sanitised text may go on to Centreon.
        return None if value is None else sanitize(value)

    @classmethod
    def not_run(
        cls, request: CheckRequest, handling: Handling, outcome: Outcome, detail: str
    ) -> CheckResult:
        """A result for a request the worker did not (or could not) probe."""
        return cls.model_validate(
            {
                "identity": request.identity,
                "warning": request.warning,
                "critical": request.critical,
                **asdict(handling),
                "ended_at": time.time(),
                "outcome": outcome,
                "detail": detail,
            }
        )

    @classmethod
    def from_probe(
        cls, request: CheckRequest, handling: Handling, probe: ProbeResult, started_at: float
    ) -> CheckResult:
        failure, tls = probe.failure, probe.tls
        return cls.model_validate(
            {
                "identity": request.identity,
                "warning": request.warning,
                "critical": request.critical,
                **asdict(handling),
                "started_at": started_at,
                "ended_at": started_at + probe.time,
                "outcome": Outcome.SUCCESS if failure is None else Outcome(failure.kind.value),
                "phase": failure.phase if failure else None,
                **_answer(probe),
                "time": probe.time,
                "phase_times": probe.phase_times,
                "tls_version": tls.version if tls else None,
                "tls_cipher": tls.cipher if tls else None,
                "cert_days_left": tls.cert_days_left if tls else None,
                "chain_days_left": tls.chain_days_left if tls else None,
                "server_address": probe.address,
                "sent_at": None if probe.sent_after is None else started_at + probe.sent_after,
            }
        )

    @classmethod
    def from_look(
        cls,
        request: CheckRequest,
        handling: Handling,
        look: MailboxLook,
        started_at: float,
    ) -> CheckResult:
        """The result of a receive step: what the look found, or why it failed."""
        failure = look.failure
        return cls.model_validate(
            {
                "identity": request.identity,
                **asdict(handling),
                "started_at": started_at,
                "ended_at": started_at + look.time,
                "outcome": Outcome.SUCCESS if failure is None else Outcome(failure.kind.value),
                "detail": failure.detail if failure else "",
                "time": look.time,
                "mailbox": MailboxReport(
                    found_in=look.found_in,
                    seen_at=look.seen_at,
                    received=look.received,
                    cleaned=look.cleaned,
                ),
            }
        )

    @property
    def awaits_delivery(self) -> bool:
        """A round trip's message was sent: the verdict comes with its receive side."""
        return (
            self.mode is Mode.ROUNDTRIP
            and self.outcome is Outcome.SUCCESS
            and self.mailbox is None
            and self.delivery is None
        )

    def probe_result(self) -> ProbeResult:
        """The measurement back as the probe gave it, for the shared output code.
        Only meaningful when `outcome.ran`."""
        failure = None
        if self.outcome is not Outcome.SUCCESS:
            failure = ProbeFailure(
                kind=FailureKind(self.outcome.value),
                phase=self.phase or Phase.CONNECT,
                detail=self.detail,
                reply_code=self.reply_code,
            )
        tls = None
        if self.tls_version is not None:
            tls = TlsInfo(
                self.tls_version, self.tls_cipher or "", self.cert_days_left, self.chain_days_left
            )
        relay = None
        if failure is None and self.relay_recipient is not None:
            relay = RelayAnswer(self.relay_recipient, self.reply_code or 0, self.detail)
        return ProbeResult(
            time=self.time or 0.0,
            phase_times=dict(self.phase_times),
            failure=failure,
            tls=tls,
            relay=relay,
            address=self.server_address,
        )


def _answer(probe: ProbeResult) -> dict[str, Any]:
    """What the server answered that the output shows: the failure's reply, or a relay
    test's RCPT reply."""
    if probe.failure is not None:
        return {"detail": probe.failure.detail, "reply_code": probe.failure.reply_code}
    if probe.relay is not None:
        relay = probe.relay
        return {"detail": relay.reply, "reply_code": relay.code, "relay_recipient": relay.recipient}
    return {"detail": "", "reply_code": None}
