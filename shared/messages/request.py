"""CheckRequest: what a worker is asked to run (scheduler -> worker).

A request carries a *reference* to the SMTP password (`env:NAME` or `file:PATH`), never the
password: the worker resolves it from its own environment.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from smtp_checks.shared.config import ScheduledCheck, SecretRef
from smtp_checks.shared.identity import CheckIdentity, Identified
from smtp_checks.shared.mailbox.spec import MailboxSpec, ReceiveProtocol, Wanted, leftover_age
from smtp_checks.shared.messages import version_1
from smtp_checks.shared.probe import validation
from smtp_checks.shared.probe.message import check_tag
from smtp_checks.shared.probe.spec import (
    CommandStep,
    Credentials,
    IpVersion,
    MechanismName,
    MessageSpec,
    Mode,
    ProbeSpec,
    ProxyVersion,
    TlsMinVersion,
    TlsMode,
    TlsSettings,
)


def _unset(value: object) -> bool:
    return value is None


def _optional_ip(value: str | None) -> str | None:
    return None if value is None else validation.ip_literal(value)


def _optional_regex(value: str | None) -> str | None:
    return None if value is None else validation.regex(value)


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(_Message):
    address: Annotated[str, AfterValidator(validation.host_name)]
    port: int = Field(gt=0, lt=65536)
    tls: TlsMode
    verify_tls: bool = True
    ca_file: str | None = None
    timeout: float = Field(gt=0, le=validation.MAX_TIMEOUT, allow_inf_nan=False)
    ip: IpVersion | None = None
    source_address: Annotated[str | None, AfterValidator(_optional_ip)] = None
    proxy_protocol: ProxyVersion | None = None
    tls_min_version: TlsMinVersion | None = None

    def tls_settings(self) -> TlsSettings:
        """TLS as the target asks for it: the SMTP server's, or a receive step's mailbox's."""
        return TlsSettings(
            mode=self.tls,
            verify=self.verify_tls,
            ca_file=self.ca_file,
            min_version=self.tls_min_version,
        )


_Address = Annotated[str, AfterValidator(validation.mail_address)]


class MessageParams(_Message):
    """The mail of a message or relay check: checked as the config is, so that a message
    made by hand cannot put two commands on one line."""

    sender: _Address
    to: tuple[_Address, ...] = Field(min_length=1)
    cc: tuple[_Address, ...] = ()
    bcc: tuple[_Address, ...] = ()
    subject: Annotated[str, AfterValidator(validation.one_line)]
    body: Annotated[str, AfterValidator(validation.text)]
    content_type: Annotated[str, AfterValidator(validation.content_type)]
    charset: Annotated[str, AfterValidator(validation.charset)]
    reply_to: _Address | None = None

    @classmethod
    def from_spec(cls, spec: MessageSpec) -> MessageParams:
        return cls(**{name: getattr(spec, name) for name in cls.model_fields})

    def to_spec(self) -> MessageSpec:
        return MessageSpec(**self.model_dump())


class CommandParams(_Message):
    """A step of the check's own dialogue (shared/probe/spec.py, CommandStep). Checked as
    the config is: a message made by hand must not put two commands on one line."""

    command: Annotated[str, AfterValidator(validation.command)]
    response: Annotated[str | None, AfterValidator(_optional_regex)] = None


class ReceiveParams(_Message):
    """The receive step of a round trip: look for the message of send run `token` in the
    mailbox of the request's target (its username and password reference are the
    mailbox's), in `mailbox` then the `junk` folders."""

    protocol: ReceiveProtocol
    mailbox: Annotated[str, AfterValidator(validation.one_line)] = "INBOX"
    junk: tuple[Annotated[str, AfterValidator(validation.one_line)], ...] = ()
    token: str = Field(pattern=r"^[0-9a-f]{1,64}$")
    check_tag: Annotated[str, AfterValidator(validation.one_line)]
    # Seconds: a message of the check with another token, older than this, is a leftover.
    leftover_age: float = Field(default=600.0, gt=0, allow_inf_nan=False)


class CheckRequest(Identified, _Message):
    schema_version: Literal[2] = 2
    identity: CheckIdentity
    target: Target
    message: MessageParams | None = None
    expect: Annotated[str | None, AfterValidator(_optional_regex)] = None
    commands: tuple[CommandParams, ...] = ()
    warning: str | None = None
    critical: str | None = None
    username: str | None = None
    auth: MechanismName | None = None
    password_ref: str | None = None  # env:NAME or file:PATH, resolved on the worker
    # A round trip's receive step (a mailbox look). Left out of the JSON when unset, as the
    # other fields of round trips: a role of the previous release reads what this one sends.
    receive: ReceiveParams | None = Field(default=None, exclude_if=_unset)

    @model_validator(mode="before")
    @classmethod
    def _version_1(cls, data: Any) -> Any:
        return version_1.upgraded(data)

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
            identity=check.identity(
                uuid.uuid4().hex, scheduled_for=scheduled_for, stale_at=stale_at, adhoc=adhoc
            ),
            target=Target(
                address=check.address,
                port=check.port,
                tls=check.tls,
                verify_tls=check.verify_tls,
                ca_file=check.ca_file,
                timeout=check.timeout,
                ip=check.ip,
                source_address=check.source_address,
                proxy_protocol=check.proxy_protocol,
                tls_min_version=check.tls_min_version,
            ),
            message=MessageParams.from_spec(check.message) if check.message else None,
            expect=check.expect,
            commands=tuple(
                CommandParams(command=step.command, response=step.response)
                for step in check.commands
            ),
            warning=check.warning,
            critical=check.critical,
            username=check.username,
            auth=check.auth,
            password_ref=str(check.password) if check.password else None,
        )

    @classmethod
    def receive_step(
        cls, check: ScheduledCheck, token: str, *, scheduled_for: float
    ) -> CheckRequest:
        """A look into the mailbox of round trip `check` for the message of send run
        `token` (ScheduledCheck.look_identity)."""
        receive = check.receive
        assert receive is not None, f"{check.check_id} is not a round trip"
        return cls(
            identity=check.look_identity(look_run_id(token), scheduled_for=scheduled_for),
            target=Target(
                address=receive.address,
                port=receive.port,
                tls=receive.tls,
                verify_tls=receive.verify_tls,
                ca_file=receive.ca_file,
                timeout=check.timeout,
            ),
            username=receive.username,
            password_ref=str(receive.password),
            receive=ReceiveParams(
                protocol=receive.protocol,
                mailbox=receive.mailbox,
                junk=receive.junk,
                token=token,
                check_tag=check_tag(check.check_id),
                leftover_age=leftover_age(receive.timeout, check.timeout),
            ),
        )

    def probe_spec(self, password: str | None) -> ProbeSpec:
        """What to probe, once the worker has resolved the password. A round trip's message
        carries the run's token and its check's tag."""
        message = self.message.to_spec() if self.message else None
        if message is not None and self.mode is Mode.ROUNDTRIP:
            message = replace(message, token=self.run_id, check_tag=check_tag(self.check_id))
        credentials = None
        if self.username:
            credentials = Credentials(self.username, password or "", mechanism=self.auth)
        return ProbeSpec(
            host=self.target.address,
            port=self.target.port,
            mode=self.identity.mode,
            tls=self.target.tls_settings(),
            timeout=self.target.timeout,
            credentials=credentials,
            message=message,
            expect=self.expect,
            commands=tuple(CommandStep(step.command, step.response) for step in self.commands),
            ip=self.target.ip,
            source_address=self.target.source_address,
            proxy_protocol=self.target.proxy_protocol,
        )

    def mailbox_spec(self, password: str | None) -> tuple[MailboxSpec, Wanted]:
        """Where a receive step looks and what for, once the worker has resolved the
        mailbox's password."""
        receive = self.receive
        assert receive is not None, "not a receive step"
        spec = MailboxSpec(
            protocol=receive.protocol,
            host=self.target.address,
            port=self.target.port,
            username=self.username or "",
            password=password or "",
            tls=self.target.tls_settings(),
            timeout=self.target.timeout,
            mailbox=receive.mailbox,
            junk=receive.junk,
        )
        return spec, Wanted(receive.token, receive.check_tag, receive.leftover_age)


def look_run_id(token: str) -> str:
    """The run id of a look for the message of send run `token`: unique, and beginning
    with the token's first half, so that any record of the look (its result, its orphan)
    tells which round trip it belongs to."""
    return token[:16] + uuid.uuid4().hex[:16]


def looks_for(run_id: str, token: str) -> bool:
    """Whether the look of run `run_id` was one for the message of send run `token`."""
    return run_id[:16] == token[:16]
