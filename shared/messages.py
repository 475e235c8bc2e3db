"""The messages between roles: CheckRequest (scheduler -> worker) and CheckResult
(worker -> consumer). JSON on the wire, validated with pydantic at both ends, versioned.

A request carries a *reference* to the SMTP password (`env:NAME` or `file:PATH`), never the
password: the worker resolves it from its own environment.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from smtp_checks.shared.config import ScheduledCheck, SecretRef
from smtp_checks.shared.probe.failures import FailureKind, ProbeFailure
from smtp_checks.shared.probe.phases import Phase
from smtp_checks.shared.probe.result import ProbeResult, TlsInfo
from smtp_checks.shared.probe.spec import (
    Credentials,
    MessageSpec,
    Mode,
    ProbeSpec,
    TlsMode,
    TlsSettings,
)
from smtp_checks.shared.sanitize import sanitize

SCHEMA_VERSION: Literal[1] = 1


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(_Message):
    address: str
    port: int = Field(gt=0, lt=65536)
    tls: TlsMode
    verify_tls: bool = True
    ca_file: str | None = None
    timeout: float = Field(gt=0)


class MessageParams(_Message):
    sender: str
    to: tuple[str, ...] = Field(min_length=1)
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    subject: str
    body: str
    content_type: str
    charset: str
    reply_to: str | None = None

    @classmethod
    def from_spec(cls, spec: MessageSpec) -> MessageParams:
        return cls(**{name: getattr(spec, name) for name in cls.model_fields})

    def to_spec(self) -> MessageSpec:
        return MessageSpec(**self.model_dump())


class CheckRequest(_Message):
    schema_version: Literal[1] = SCHEMA_VERSION
    check_id: str  # "mx1/login": stable across runs
    run_id: str  # unique per run: how a redelivery or a duplicate is recognised
    host: str  # Centreon host name
    service: str  # Centreon service description
    site: str
    mode: Mode
    target: Target
    message: MessageParams | None = None
    warning: str | None = None
    critical: str | None = None
    username: str | None = None
    password_ref: str | None = None  # env:NAME or file:PATH, resolved on the worker
    scheduled_for: float  # epoch seconds
    stale_at: float  # epoch seconds: the next run is due, this one must not start any more
    adhoc: bool = False

    @field_validator("password_ref")
    @classmethod
    def _reference_only(cls, value: str | None) -> str | None:
        if value is not None:
            SecretRef.parse(value)  # raises on anything but env:NAME / file:PATH
        return value

    @classmethod
    def from_scheduled(
        cls, check: ScheduledCheck, *, scheduled_for: float, stale_at: float, adhoc: bool = False
    ) -> CheckRequest:
        return cls(
            check_id=check.check_id,
            run_id=uuid.uuid4().hex,
            host=check.host,
            service=check.service,
            site=check.site,
            mode=check.mode,
            target=Target(
                address=check.address,
                port=check.port,
                tls=check.tls,
                verify_tls=check.verify_tls,
                ca_file=check.ca_file,
                timeout=check.timeout,
            ),
            message=MessageParams.from_spec(check.message) if check.message else None,
            warning=check.warning,
            critical=check.critical,
            username=check.username,
            password_ref=str(check.password) if check.password else None,
            scheduled_for=scheduled_for,
            stale_at=stale_at,
            adhoc=adhoc,
        )

    def probe_spec(self, password: str | None) -> ProbeSpec:
        """What to probe, once the worker has resolved the password."""
        credentials = None
        if self.username:
            credentials = Credentials(self.username, password or "")
        return ProbeSpec(
            host=self.target.address,
            port=self.target.port,
            mode=self.mode,
            tls=TlsSettings(
                mode=self.target.tls, verify=self.target.verify_tls, ca_file=self.target.ca_file
            ),
            timeout=self.target.timeout,
            credentials=credentials,
            message=self.message.to_spec() if self.message else None,
        )


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
    STALE = "stale"  # arrived (or was redelivered) after its stale time: not run
    CREDENTIAL = "credential"  # the password reference did not resolve on the worker
    THROTTLED = "throttled"  # no per-target session permit before the deadline
    LIMITER_DOWN = "limiter_down"  # the per-target limiter's Redis was unreachable

    @property
    def ran(self) -> bool:
        """True when the probe talked to the server (its time and failure mean something)."""
        return self.value in _PROBE_OUTCOMES


_PROBE_OUTCOMES = frozenset({"success", *(kind.value for kind in FailureKind)})


class CheckResult(_Message):
    schema_version: Literal[1] = SCHEMA_VERSION
    # The request's identity, copied so the consumer needs nothing else to render it.
    check_id: str
    run_id: str
    host: str
    service: str
    site: str
    mode: Mode
    warning: str | None = None
    critical: str | None = None
    scheduled_for: float
    stale_at: float
    adhoc: bool = False
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

    @field_validator("detail", "tls_version", "tls_cipher")
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
                **_identity(request),
                **handling.fields(),
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
                **_identity(request),
                **handling.fields(),
                "started_at": started_at,
                "ended_at": started_at + probe.time,
                "outcome": Outcome.SUCCESS if failure is None else Outcome(failure.kind.value),
                "phase": failure.phase if failure else None,
                "detail": failure.detail if failure else "",
                "reply_code": failure.reply_code if failure else None,
                "time": probe.time,
                "phase_times": probe.phase_times,
                "tls_version": tls.version if tls else None,
                "tls_cipher": tls.cipher if tls else None,
                "cert_days_left": tls.cert_days_left if tls else None,
            }
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
            tls = TlsInfo(self.tls_version, self.tls_cipher or "", self.cert_days_left)
        return ProbeResult(
            time=self.time or 0.0, phase_times=dict(self.phase_times), failure=failure, tls=tls
        )


@dataclass(frozen=True)
class Handling:
    """How a worker handled a request, before any probing: who, when, how long it waited."""

    worker: str
    received_at: float  # epoch seconds
    queue_wait: float
    permit_wait: float = 0.0
    redelivered: bool = False

    def fields(self) -> dict[str, object]:
        return {
            "worker": self.worker,
            "received_at": self.received_at,
            "queue_wait": self.queue_wait,
            "permit_wait": self.permit_wait,
            "redelivered": self.redelivered,
        }


def _identity(request: CheckRequest) -> dict[str, object]:
    fields = ("check_id", "run_id", "host", "service", "site", "mode", "warning", "critical")
    identity: dict[str, object] = {name: getattr(request, name) for name in fields}
    identity.update(
        scheduled_for=request.scheduled_for, stale_at=request.stale_at, adhoc=request.adhoc
    )
    return identity
