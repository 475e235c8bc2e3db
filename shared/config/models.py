"""The configuration file as validated models: what each key may hold. A misspelt key is an
error, not a silently ignored setting (`extra="forbid"`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from smtp_checks.shared.config.checks import ScheduledCheck, resolve
from smtp_checks.shared.config.rules import cross_field_problems, host_facts
from smtp_checks.shared.config.values import (
    Addresses,
    AuthMechanism,
    CentreonName,
    Command,
    EngineReader,
    HostAddress,
    HttpUrl,
    IpLiteral,
    MailAddress,
    OneLine,
    Port,
    RateLimit,
    Regex,
    SecretRefField,
    SiteName,
    Timeout,
    number_as_text,
    threshold_text,
)
from smtp_checks.shared.mailbox.spec import ReceiveProtocol
from smtp_checks.shared.probe.spec import IpVersion, Mode, ProxyVersion, TlsMinVersion, TlsMode
from smtp_checks.shared.redis_urls import is_redis_url


class _Model(BaseModel):
    # extra="forbid": a misspelt key is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Defaults(_Model):
    interval: PositiveInt = 60
    ip: IpVersion | None = None  # 4 or 6 only; unset: the resolver's order, either family
    timeout: Timeout = 30.0
    port: Port | None = None  # None: the TLS mode's port (25, or 465 for ssl)
    tls: TlsMode = TlsMode.STARTTLS
    verify_tls: bool = True
    ca_file: str | None = None
    tls_min_version: TlsMinVersion | None = None  # "1.2" | "1.3"; unset: Python's (1.2)


class Site(_Model):
    rate_limit: RateLimit | None = None  # per worker of the site, Celery's syntax
    source_address: IpLiteral | None = None  # the site's egress address, for its checks


def _none_as_empty(value: object) -> object:
    # `lyon:` with nothing after it reads as null; it means "a site with no settings".
    return {} if value is None else value


Sites = dict[SiteName, Annotated[Site, BeforeValidator(_none_as_empty)]]


class TargetLimits(_Model):
    """Per SMTP server, across all workers of all sites."""

    max_concurrent: PositiveInt = 2
    max_per_minute: PositiveInt = 30


class CommandStepModel(_Model):
    """One step of a check's own dialogue after EHLO: `command`, and the regular expression
    its reply must match (`response`; none: any reply)."""

    command: Command
    response: Regex | None = None


class _Thresholds(_Model):
    """A warning and a critical range, checked as the plugin parses them."""

    warning: Annotated[str | None, BeforeValidator(number_as_text)] = None
    critical: Annotated[str | None, BeforeValidator(number_as_text)] = None

    @field_validator("warning")
    @classmethod
    def _warning(cls, value: str | None) -> str | None:
        return threshold_text("warning", value)

    @field_validator("critical")
    @classmethod
    def _critical(cls, value: str | None) -> str | None:
        return threshold_text("critical", value)


class CheckSettings(_Thresholds):
    """What every check may override; None inherits from the host, then from `defaults`.
    `expect` and `commands` belong to the check alone; `warning` and `critical` are on
    the response time."""

    service: CentreonName | None = None
    interval: PositiveInt | None = None
    timeout: Timeout | None = None
    port: Port | None = None
    tls: TlsMode | None = None
    verify_tls: bool | None = None
    ip: IpVersion | None = None
    source_address: IpLiteral | None = None
    proxy_protocol: ProxyVersion | None = None  # send a PROXY header first (behind HAProxy)
    expect: Regex | None = None  # the banner must match (check_smtp -e)
    commands: tuple[CommandStepModel, ...] = ()  # after EHLO, in order (check_smtp -C/-R)


class LoginCheck(CheckSettings):
    pass


class MessageCheck(CheckSettings):
    model_config = ConfigDict(populate_by_name=True)

    sender: MailAddress = Field(alias="from")
    to: Addresses = Field(min_length=1)
    cc: Addresses = ()
    bcc: Addresses = ()
    subject: OneLine | None = None
    body: str | None = None
    reply_to: MailAddress | None = None


class RelayCheck(CheckSettings):
    """An unauthenticated RCPT TO `to`, an outside address the server must refuse."""

    model_config = ConfigDict(populate_by_name=True)

    sender: MailAddress = Field(alias="from")
    to: MailAddress


class ReceiveSettings(_Thresholds):
    """The mailbox a round trip looks for its message in (checks.roundtrip.receive), the
    site whose workers read it (default: the host's), and thresholds on the delivery time."""

    protocol: ReceiveProtocol
    address: HostAddress
    port: Port | None = None  # None: the protocol's (993, 143, 995, 110)
    tls: TlsMode = TlsMode.IMPLICIT  # ssl (IMAPS, POP3S) | starttls | none
    verify_tls: bool | None = None  # None: the host's, then the defaults'
    ca_file: str | None = None
    username: OneLine
    password: SecretRefField
    mailbox: OneLine = "INBOX"
    junk: tuple[OneLine, ...] = ()  # searched too: found there is WARNING
    site: SiteName | None = None
    timeout: Timeout = 120.0  # seconds the message has to arrive

    @model_validator(mode="after")
    def _folders_need_imap(self) -> ReceiveSettings:
        if self.protocol is ReceiveProtocol.POP3 and (self.junk or self.mailbox != "INBOX"):
            raise ValueError("junk folders and a mailbox other than INBOX need IMAP (POP3 has one)")
        return self


class RoundtripCheck(MessageCheck):
    """A message as `message` sends it, then looked for in `receive`'s mailbox."""

    receive: ReceiveSettings


class Checks(_Model):
    login: LoginCheck | None = None
    message: MessageCheck | None = None
    relay: RelayCheck | None = None
    roundtrip: RoundtripCheck | None = None

    @model_validator(mode="before")
    @classmethod
    def _empty_means_enabled(cls, data: object) -> object:
        # `login:` with nothing after it means "a login check with the defaults".
        if isinstance(data, dict):
            return {key: {} if value is None else value for key, value in data.items()}
        return data

    def items(self) -> Iterator[tuple[Mode, CheckSettings]]:
        if self.login is not None:
            yield Mode.LOGIN, self.login
        if self.message is not None:
            yield Mode.MESSAGE, self.message
        if self.relay is not None:
            yield Mode.RELAY, self.relay
        if self.roundtrip is not None:
            yield Mode.ROUNDTRIP, self.roundtrip


class Host(_Model):
    name: CentreonName  # the Centreon host name
    address: HostAddress
    site: str
    port: Port | None = None
    tls: TlsMode | None = None
    verify_tls: bool | None = None
    ca_file: str | None = None
    tls_min_version: TlsMinVersion | None = None
    timeout: Timeout | None = None
    interval: PositiveInt | None = None
    ip: IpVersion | None = None
    source_address: IpLiteral | None = None
    proxy_protocol: ProxyVersion | None = None
    username: OneLine | None = None
    password: SecretRefField | None = None  # XOAUTH2: a reference to the bearer token
    auth: AuthMechanism | None = None  # unset: the best mechanism the server offers
    checks: Checks


class CommandFileForwarder(_Model):
    type: Literal["command_file"]
    path: str = Field(min_length=1)
    engine: EngineReader = EngineReader.CENTREON


class ApiV2Forwarder(_Model):
    """Logs in with `username` and `password`, or sends a long-lived API `token` (Centreon
    24.04+) and never logs in: one or the other."""

    type: Literal["api_v2"]
    url: HttpUrl
    username: str | None = Field(default=None, min_length=1)
    password: SecretRefField | None = None
    token: SecretRefField | None = None
    verify_tls: bool = True
    engine: EngineReader = EngineReader.CENTREON

    @model_validator(mode="after")
    def _one_way_in(self) -> ApiV2Forwarder:
        login = self.username is not None or self.password is not None
        if self.token is not None and login:
            raise ValueError("give either token or username and password, not both")
        if self.token is None and (self.username is None or self.password is None):
            raise ValueError("needs username and password (or token: an API token reference)")
        return self


class ApiV1Forwarder(_Model):
    type: Literal["api_v1"]
    url: HttpUrl
    username: str = Field(min_length=1)
    password: SecretRefField
    engine: EngineReader = EngineReader.CENTREON


Forwarder = Annotated[
    CommandFileForwarder | ApiV2Forwarder | ApiV1Forwarder, Field(discriminator="type")
]
FORWARDER_TYPES = ("command_file", "api_v2", "api_v1")


class SelfCheck(_Model):
    """The pipeline's own health, forwarded as passive services of Centreon host `host`:
    `Site-<site>` for each site and `Pipeline` (consumer/self_check.py)."""

    host: CentreonName


class Centreon(_Model):
    forwarders: list[Forwarder] = []
    self_check: SelfCheck | None = None
    resend_interval: PositiveInt = 300  # seconds: forward the current state at least this often
    # Results waiting for an unreachable Centreon, per forwarder; past it refreshes are dropped
    # (state changes never are).
    outbox_max_length: PositiveInt = 100_000
    # Seconds after a run's stale time before its missing result is reported as orphaned.
    orphan_grace: PositiveInt = 30


class Config(_Model):
    broker_url: str | None = None  # None: the embedded default of `smtp-checks run`
    # Per-target limits and consumer state live in Redis: the broker's, unless it is not Redis.
    redis_url: str | None = None
    # Redis behind Sentinel (`sentinel://...` URLs): the master's name, the sentinels' password.
    sentinel_master: OneLine | None = None
    sentinel_password: SecretRefField | None = None
    # Seconds before a message a dead worker had taken is delivered again (Redis broker).
    visibility_timeout: PositiveInt = 600
    # The check queues on RabbitMQ: classic, or quorum (replicated across the cluster).
    broker_queue_type: Literal["classic", "quorum"] = "classic"
    defaults: Defaults = Field(default_factory=Defaults)
    sites: Sites
    target_limits: TargetLimits = Field(default_factory=TargetLimits)
    hosts: list[Host]
    centreon: Centreon = Field(default_factory=Centreon)

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Config:
        # parse_config reports these itself, each at its own location.
        if not (info.context or {}).get("skip_cross_field"):
            problems = cross_field_problems(self.defaults, self.sites, host_facts(self.hosts))
            if problems:
                raise ValueError("; ".join(f"{where}: {why}" for where, why in problems))
        return self

    @property
    def state_redis_url(self) -> str | None:
        """The Redis for per-target limits and state: `redis_url`, else a Redis broker."""
        if self.redis_url:
            return self.redis_url
        if self.broker_url and is_redis_url(self.broker_url):
            return self.broker_url
        return None

    def scheduled_checks(self) -> list[ScheduledCheck]:
        """Every configured (host, check), in file order."""
        return [
            resolve(self.defaults, host, mode, check, site=self.sites.get(host.site))
            for host in self.hosts
            for mode, check in host.checks.items()
        ]
