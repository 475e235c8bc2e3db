"""One resolved check per (host, check) of the file: the `defaults` -> host -> check cascade
applied, every value filled in. What the scheduler enqueues and the consumer expects."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypeVar, cast

from smtp_checks.shared.config.values import SecretRef
from smtp_checks.shared.identity import CheckIdentity
from smtp_checks.shared.mailbox.spec import ReceiveProtocol
from smtp_checks.shared.output.thresholds import Thresholds
from smtp_checks.shared.probe.spec import (
    CommandStep,
    IpVersion,
    MechanismName,
    MessageSpec,
    Mode,
    ProxyVersion,
    TlsMinVersion,
    TlsMode,
)

if TYPE_CHECKING:  # the models use the cascade; the cascade only reads them
    from smtp_checks.shared.config.models import (
        CheckSettings,
        Defaults,
        Host,
        MessageCheck,
        RelayCheck,
        RoundtripCheck,
        Site,
    )

DEFAULT_SERVICES = {
    Mode.LOGIN: "SMTP-Login",
    Mode.MESSAGE: "SMTP-Message",
    Mode.RELAY: "SMTP-Relay",
    Mode.ROUNDTRIP: "SMTP-Roundtrip",
}


RECEIVE_SUFFIX = "/receive"  # of a round trip's check id: its receive steps' id


def sending_check_id(receive_check_id: str) -> str:
    """The round trip whose receive steps have the id `receive_check_id`."""
    return receive_check_id.removesuffix(RECEIVE_SUFFIX)


@dataclass(frozen=True)
class Receive:
    """A round trip's receive side with the cascade applied: the mailbox, the site whose
    workers look into it, how long the message has to arrive, thresholds on its delivery."""

    protocol: ReceiveProtocol
    address: str
    port: int
    tls: TlsMode
    verify_tls: bool
    ca_file: str | None
    username: str
    password: SecretRef
    mailbox: str
    junk: tuple[str, ...]
    site: str
    timeout: float
    warning: str | None
    critical: str | None


@dataclass(frozen=True)
class ScheduledCheck:
    """One (host, check) with every cascaded value filled in: what the scheduler enqueues."""

    check_id: str  # "mx1/login"
    host: str
    service: str
    mode: Mode
    site: str
    address: str
    port: int
    tls: TlsMode
    verify_tls: bool
    ca_file: str | None
    timeout: float
    interval: int
    warning: str | None
    critical: str | None
    username: str | None
    password: SecretRef | None
    message: MessageSpec | None
    ip: IpVersion | None = None
    source_address: str | None = None
    proxy_protocol: ProxyVersion | None = None
    tls_min_version: TlsMinVersion | None = None
    auth: MechanismName | None = None  # None: the best mechanism the server offers
    expect: str | None = None
    commands: tuple[CommandStep, ...] = ()
    receive: Receive | None = None  # mode roundtrip

    @property
    def receive_check_id(self) -> str:
        """The id under which the ledger knows a round trip's receive steps (each a run of
        its own, on the receiving site)."""
        return f"{self.check_id}{RECEIVE_SUFFIX}"

    def identity(
        self, run_id: str, *, scheduled_for: float, stale_at: float, adhoc: bool = False
    ) -> CheckIdentity:
        """The identity of one run of this check."""
        return CheckIdentity(
            check_id=self.check_id,
            host=self.host,
            service=self.service,
            site=self.site,
            mode=self.mode,
            run_id=run_id,
            scheduled_for=scheduled_for,
            stale_at=stale_at,
            adhoc=adhoc,
        )

    def look_identity(self, run_id: str, *, scheduled_for: float) -> CheckIdentity:
        """The identity of one look into this round trip's mailbox: a run of its own, on
        the receiving site, stale once a look's timeout (the check's) has passed."""
        assert self.receive is not None, f"{self.check_id} is not a round trip"
        identity = self.identity(
            run_id, scheduled_for=scheduled_for, stale_at=scheduled_for + self.timeout
        )
        return replace(identity, check_id=self.receive_check_id, site=self.receive.site)

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds.parse(self.warning, self.critical)

    @property
    def per_minute(self) -> float:
        return 60 / self.interval


_T = TypeVar("_T")


def _first(*values: _T | None) -> _T | None:
    return next((value for value in values if value is not None), None)


def resolve(
    defaults: Defaults, host: Host, mode: Mode, check: CheckSettings, *, site: Site | None = None
) -> ScheduledCheck:
    """The check `mode` of `host` with the cascade applied (`site`: the host's site, whose
    `source_address` is the default of its checks)."""
    tls = _first(check.tls, host.tls, defaults.tls) or TlsMode.STARTTLS
    message = None
    receive = None
    if mode is Mode.ROUNDTRIP:
        receive = _receive(defaults, host, cast("RoundtripCheck", check))
    if mode.sends_message:
        check = cast("MessageCheck", check)
        optional = {"subject": check.subject, "body": check.body}
        message = MessageSpec(
            sender=check.sender,
            to=check.to,
            cc=check.cc,
            bcc=check.bcc,
            reply_to=check.reply_to,
            **{key: value for key, value in optional.items() if value is not None},
        )
    elif mode is Mode.RELAY:
        relay = cast("RelayCheck", check)
        message = MessageSpec(sender=relay.sender, to=(relay.to,))
    return ScheduledCheck(
        check_id=f"{host.name}/{mode.value}",
        host=host.name,
        service=check.service or DEFAULT_SERVICES[mode],
        mode=mode,
        site=host.site,
        address=host.address,
        port=_first(check.port, host.port, defaults.port) or tls.default_port,
        tls=tls,
        verify_tls=bool(_first(check.verify_tls, host.verify_tls, defaults.verify_tls)),
        ca_file=_first(host.ca_file, defaults.ca_file),
        timeout=_first(check.timeout, host.timeout) or defaults.timeout,
        interval=_first(check.interval, host.interval) or defaults.interval,
        warning=check.warning,
        critical=check.critical,
        # A relay test is unauthenticated by definition: it never needs the password.
        username=None if mode is Mode.RELAY else host.username,
        password=None if mode is Mode.RELAY else host.password,
        message=message,
        ip=_first(check.ip, host.ip, defaults.ip),
        source_address=_first(
            check.source_address, host.source_address, site.source_address if site else None
        ),
        proxy_protocol=_first(check.proxy_protocol, host.proxy_protocol),
        tls_min_version=_first(host.tls_min_version, defaults.tls_min_version),
        auth=None if mode is Mode.RELAY else host.auth,
        expect=check.expect,
        commands=tuple(CommandStep(step.command, step.response) for step in check.commands),
        receive=receive,
    )


def _receive(defaults: Defaults, host: Host, check: RoundtripCheck) -> Receive:
    settings = check.receive
    return Receive(
        protocol=settings.protocol,
        address=settings.address,
        port=settings.port or settings.protocol.default_port(settings.tls),
        tls=settings.tls,
        verify_tls=bool(_first(settings.verify_tls, host.verify_tls, defaults.verify_tls)),
        ca_file=_first(settings.ca_file, host.ca_file, defaults.ca_file),
        username=settings.username,
        password=settings.password,
        mailbox=settings.mailbox,
        junk=settings.junk,
        site=settings.site or host.site,
        timeout=settings.timeout,
        warning=settings.warning,
        critical=settings.critical,
    )


def asked_per_minute(checks: list[ScheduledCheck]) -> dict[str, float]:
    """The checks per minute the config asks of each site."""
    asked: dict[str, float] = {}
    for check in checks:
        asked[check.site] = asked.get(check.site, 0.0) + 60.0 / check.interval
    return asked
