"""The YAML configuration: validated models, `SMTP_CHECKS_*` overrides, and one resolved
`ScheduledCheck` per (host, check) with the `defaults` -> host -> check cascade applied.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    PositiveFloat,
    PositiveInt,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from shared.probe_spec import MessageSpec, Mode, TlsMode
from shared.thresholds import ThresholdError, Thresholds

__all__ = [
    "ApiV1Forwarder",
    "ApiV2Forwarder",
    "Centreon",
    "CheckSettings",
    "Checks",
    "CommandFileForwarder",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "Defaults",
    "EngineReader",
    "Host",
    "LoginCheck",
    "MessageCheck",
    "ScheduledCheck",
    "SecretRef",
    "Site",
    "TargetLimits",
    "load_config",
    "parse_config",
    "rate_per_minute",
]

ENV_PREFIX = "SMTP_CHECKS_"
DEFAULT_SERVICES = {Mode.LOGIN: "SMTP-Login", Mode.MESSAGE: "SMTP-Message"}


# --- problems -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config file; `location` is a path like `hosts[3].checks.login`."""

    file: str
    location: str
    reason: str

    def __str__(self) -> str:
        if not self.location:
            return f"{self.file}: {self.reason}"
        return f"{self.file}: {self.location}: {self.reason}"


class ConfigError(Exception):
    """A config that cannot be used; carries every problem found, not just the first."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        super().__init__("\n".join(str(problem) for problem in problems))
        self.problems = problems


# --- small value types ----------------------------------------------------------------------


@dataclass(frozen=True)
class SecretRef:
    """Where a worker finds a secret (`env:NAME` or `file:PATH`); never the secret itself."""

    kind: Literal["env", "file"]
    name: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"

    @classmethod
    def parse(cls, text: str) -> SecretRef:
        # The messages never quote the text: it may be a password typed in by mistake.
        kind, separator, name = text.partition(":")
        if separator and kind == "env":
            if not _ENV_NAME.fullmatch(name):
                raise ValueError("env:NAME needs a variable name (letters, digits and '_')")
            return cls("env", name)
        if separator and kind == "file":
            if not name.strip():
                raise ValueError("file:PATH needs a path")
            return cls("file", name)
        raise ValueError(
            "plain-text passwords are refused: write a reference, env:NAME (an environment "
            "variable on the worker) or file:PATH (a file on the worker)"
        )


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _secret_ref(value: object) -> SecretRef:
    if isinstance(value, SecretRef):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a secret reference, env:NAME or file:PATH")
    return SecretRef.parse(value)


SecretRefField = Annotated[
    SecretRef, PlainValidator(_secret_ref), PlainSerializer(str, return_type=str)
]


def _centreon_name(value: str) -> str:
    # Centreon's external command is one line of `;`-separated fields.
    if ";" in value or "\n" in value or "\r" in value:
        raise ValueError("must not contain ';' or a line break (it would break Centreon's command)")
    return value


CentreonName = Annotated[str, Field(min_length=1), AfterValidator(_centreon_name)]


def _one_line(value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError("must not contain a line break")
    return value


OneLine = Annotated[str, Field(min_length=1), AfterValidator(_one_line)]
Port = Annotated[int, Field(ge=1, le=65535)]


def _site_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
        raise ValueError("a site name is part of a queue name: letters, digits, '_', '-', '.'")
    return value


SiteName = Annotated[str, AfterValidator(_site_name)]


def _number_as_text(value: object) -> object:
    # YAML reads `warning: 2` and `rate_limit: 10` as numbers; both are text to us.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


_RATE = re.compile(r"(\d+(?:\.\d+)?)(?:/([smh]))?")
_PER_MINUTE = {"s": 60.0, "m": 1.0, "h": 1 / 60}


def rate_per_minute(rate_limit: str) -> float:
    """A Celery rate limit (`600/m`, `10/s`, `100/h`, `5` meaning per second) per minute."""
    match = _RATE.fullmatch(rate_limit.strip())
    if match is None:
        raise ValueError("not a Celery rate limit: write N/s, N/m or N/h (for example 600/m)")
    return float(match.group(1)) * _PER_MINUTE[match.group(2) or "s"]


def _rate_limit(value: str) -> str:
    if rate_per_minute(value) <= 0:
        raise ValueError("must be positive (leave it out for no limit)")
    return value.strip()


RateLimit = Annotated[str, BeforeValidator(_number_as_text), AfterValidator(_rate_limit)]


def _to_tuple(value: object) -> object:
    return (value,) if isinstance(value, str) else value


Addresses = Annotated[tuple[OneLine, ...], BeforeValidator(_to_tuple)]


def _threshold(label: Literal["warning", "critical"], text: str | None) -> str | None:
    try:
        if label == "warning":
            Thresholds.parse(text, None)
        else:
            Thresholds.parse(None, text)
    except ThresholdError as error:
        raise ValueError(str(error)) from None
    return text


# --- the models -----------------------------------------------------------------------------


class _Model(BaseModel):
    # extra="forbid": a misspelt key is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Defaults(_Model):
    interval: PositiveInt = 60
    timeout: PositiveFloat = 30.0
    port: Port | None = None  # None: the TLS mode's port (25, or 465 for ssl)
    tls: TlsMode = TlsMode.STARTTLS
    verify_tls: bool = True
    ca_file: str | None = None


class Site(_Model):
    rate_limit: RateLimit | None = None  # per worker of the site, Celery's syntax

    @property
    def checks_per_minute_limit(self) -> float | None:
        return None if self.rate_limit is None else rate_per_minute(self.rate_limit)


def _none_as_empty(value: object) -> object:
    # `lyon:` with nothing after it reads as null; it means "a site with no settings".
    return {} if value is None else value


Sites = dict[SiteName, Annotated[Site, BeforeValidator(_none_as_empty)]]


class TargetLimits(_Model):
    """Per SMTP server, across all workers of all sites."""

    max_concurrent: PositiveInt = 2
    max_per_minute: PositiveInt = 30


class CheckSettings(_Model):
    """What every check may override; None inherits from the host, then from `defaults`."""

    service: CentreonName | None = None
    interval: PositiveInt | None = None
    timeout: PositiveFloat | None = None
    port: Port | None = None
    tls: TlsMode | None = None
    verify_tls: bool | None = None
    warning: Annotated[str | None, BeforeValidator(_number_as_text)] = None
    critical: Annotated[str | None, BeforeValidator(_number_as_text)] = None

    @field_validator("warning")
    @classmethod
    def _warning(cls, value: str | None) -> str | None:
        return _threshold("warning", value)

    @field_validator("critical")
    @classmethod
    def _critical(cls, value: str | None) -> str | None:
        return _threshold("critical", value)


class LoginCheck(CheckSettings):
    pass


class MessageCheck(CheckSettings):
    model_config = ConfigDict(populate_by_name=True)

    sender: OneLine = Field(alias="from")
    to: Addresses = Field(min_length=1)
    cc: Addresses = ()
    bcc: Addresses = ()
    subject: OneLine | None = None
    body: str | None = None
    reply_to: OneLine | None = None


class Checks(_Model):
    login: LoginCheck | None = None
    message: MessageCheck | None = None

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


class Host(_Model):
    name: CentreonName  # the Centreon host name
    address: OneLine
    site: str
    port: Port | None = None
    tls: TlsMode | None = None
    verify_tls: bool | None = None
    ca_file: str | None = None
    timeout: PositiveFloat | None = None
    interval: PositiveInt | None = None
    username: OneLine | None = None
    password: SecretRefField | None = None
    checks: Checks


class EngineReader(StrEnum):
    """The engine that reads what a forwarder sends; it decides how backslashes are written
    (workers/forwarders/engine_text.py). `centreon` is right for every Centreon version."""

    CENTREON = "centreon"
    NAGIOS = "nagios"


class CommandFileForwarder(_Model):
    type: Literal["command_file"]
    path: str = Field(min_length=1)
    engine: EngineReader = EngineReader.CENTREON


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]


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
_FORWARDER_TYPES = ("command_file", "api_v2", "api_v1")


class Centreon(_Model):
    forwarders: list[Forwarder] = []
    resend_interval: PositiveInt = 300  # seconds: forward the current state at least this often
    # Results waiting for an unreachable Centreon, per forwarder; past it refreshes are dropped
    # (state changes never are).
    outbox_max_length: PositiveInt = 100_000
    # Seconds after a run's stale time before its missing result is reported as orphaned.
    orphan_grace: PositiveInt = 30


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

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds.parse(self.warning, self.critical)

    @property
    def per_minute(self) -> float:
        return 60 / self.interval


class Config(_Model):
    broker_url: str | None = None  # None: the embedded default of `smtp-checks run`
    # Per-target limits and consumer state live in Redis: the broker's, unless it is not Redis.
    redis_url: str | None = None
    # Seconds before a message a dead worker had taken is delivered again (Redis broker).
    visibility_timeout: PositiveInt = 600
    defaults: Defaults = Field(default_factory=Defaults)
    sites: Sites
    target_limits: TargetLimits = Field(default_factory=TargetLimits)
    hosts: list[Host]
    centreon: Centreon = Field(default_factory=Centreon)

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Config:
        # parse_config reports these itself, each at its own location.
        if not (info.context or {}).get("skip_cross_field"):
            problems = _cross_field_problems(self.defaults, set(self.sites), _facts(self.hosts))
            if problems:
                raise ValueError("; ".join(f"{where}: {why}" for where, why in problems))
        return self

    @property
    def state_redis_url(self) -> str | None:
        """The Redis for per-target limits and state: `redis_url`, else a Redis broker."""
        if self.redis_url:
            return self.redis_url
        if self.broker_url and _is_redis(self.broker_url):
            return self.broker_url
        return None

    def scheduled_checks(self) -> list[ScheduledCheck]:
        """Every configured (host, check), in file order."""
        return [
            _resolve(self.defaults, host, mode, check)
            for host in self.hosts
            for mode, check in host.checks.items()
        ]


# --- the cascade and the rules across fields ------------------------------------------------


_T = TypeVar("_T")


def _first(*values: _T | None) -> _T | None:
    return next((value for value in values if value is not None), None)


def _resolve(defaults: Defaults, host: Host, mode: Mode, check: CheckSettings) -> ScheduledCheck:
    tls = _first(check.tls, host.tls, defaults.tls) or TlsMode.STARTTLS
    message = None
    if isinstance(check, MessageCheck):
        optional = {"subject": check.subject, "body": check.body}
        message = MessageSpec(
            sender=check.sender,
            to=check.to,
            cc=check.cc,
            bcc=check.bcc,
            reply_to=check.reply_to,
            **{key: value for key, value in optional.items() if value is not None},
        )
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
        username=host.username,
        password=host.password,
        message=message,
    )


class _HostFacts(NamedTuple):
    """What the rules across fields know of one host; None where that part is invalid."""

    position: int
    name: str | None
    site: str | None
    host: Host | None


def _facts(hosts: list[Host]) -> list[_HostFacts]:
    return [_HostFacts(index, host.name, host.site, host) for index, host in enumerate(hosts)]


def _cross_field_problems(
    defaults: Defaults | None, sites: set[str] | None, hosts: list[_HostFacts]
) -> list[tuple[str, str]]:
    """Rules no single field can check. A None part was invalid itself: its rules are skipped."""
    problems: list[tuple[str, str]] = []
    first_index: dict[str, int] = {}
    for index, name, site, host in hosts:
        where = f"hosts[{index}]"
        if name is not None and name in first_index:
            problems.append(
                (
                    f"{where}.name",
                    f"duplicate host '{name}' (also hosts[{first_index[name]}]): "
                    "each (host, check) must be configured once",
                )
            )
        if name is not None:
            first_index.setdefault(name, index)
        if sites is not None and site is not None and site not in sites:
            known = ", ".join(sorted(sites)) or "none"
            problems.append((f"{where}.site", f"unknown site '{site}' (sites: {known})"))
        if host is None:
            continue
        services: dict[str, str] = {}
        for mode, check in host.checks.items():
            check_where = f"{where}.checks.{mode.value}"
            service = check.service or DEFAULT_SERVICES[mode]
            if service in services:
                problems.append(
                    (
                        f"{check_where}.service",
                        f"service '{service}' is also the {services[service]}",
                    )
                )
            services.setdefault(service, f"{mode.value} check's")
            if defaults is not None:
                resolved = _resolve(defaults, host, mode, check)
                if resolved.interval < resolved.timeout:
                    problems.append(
                        (
                            check_where,
                            f"interval {resolved.interval}s is shorter than the timeout "
                            f"{resolved.timeout:g}s (a run could still be going at the next one)",
                        )
                    )
    return problems


# --- loading --------------------------------------------------------------------------------


class _EnvOverrides(BaseSettings):
    """`SMTP_CHECKS_<KEY>` replaces a top-level key; structured keys take JSON."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="ignore")

    broker_url: str | None = None
    redis_url: str | None = None
    visibility_timeout: int | None = None
    defaults: dict[str, Any] | None = None
    sites: dict[str, Any] | None = None
    target_limits: dict[str, Any] | None = None
    hosts: list[Any] | None = None
    centreon: dict[str, Any] | None = None


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key written twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}'", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | Path) -> Config:
    """Read, override from the environment and validate; raise ConfigError with every problem."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError([ConfigProblem(file, "", f"cannot read: {error.strerror}")]) from None
    except UnicodeDecodeError:
        raise ConfigError([ConfigProblem(file, "", "not UTF-8 text")]) from None
    data = _parse_yaml(file, text)
    data.update(_environment_overrides(file))
    return parse_config(data, file)


def _parse_yaml(file: str, text: str) -> dict[str, Any]:
    loader = _UniqueKeyLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = " ".join(part for part in (error.context, error.problem) if part)
        raise ConfigError([ConfigProblem(file, where, f"YAML: {reason}")]) from None
    except yaml.YAMLError as error:
        raise ConfigError([ConfigProblem(file, "", f"YAML: {error}")]) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem(file, "", "must be a YAML mapping of settings")])
    return data


def _environment_overrides(file: str) -> dict[str, Any]:
    try:
        overrides = _EnvOverrides()
    except SettingsError as error:
        raise ConfigError([ConfigProblem(file, "environment", str(error))]) from None
    except ValidationError as error:
        raise ConfigError(
            [
                ConfigProblem(file, f"environment {ENV_PREFIX}{str(e['loc'][0]).upper()}", e["msg"])
                for e in error.errors(include_input=False)
            ]
        ) from None
    return overrides.model_dump(exclude_unset=True)


def parse_config(data: Mapping[str, Any], file: str = "<config>") -> Config:
    """Validate already-read settings; raise ConfigError with every problem found."""
    try:
        config = Config.model_validate(data, context={"skip_cross_field": True})
    except ValidationError as error:
        problems = [_problem(file, details) for details in error.errors(include_input=False)]
        defaults, sites, hosts = _valid_parts(data)
    else:
        problems = [ConfigProblem(file, where, why) for where, why in _delivery_problems(config)]
        defaults, sites, hosts = config.defaults, set(config.sites), _facts(config.hosts)
    problems += [
        ConfigProblem(file, where, why)
        for where, why in _cross_field_problems(defaults, sites, hosts)
    ]
    problems += [ConfigProblem(file, where, why) for where, why in _broker_problems(data)]
    if problems:
        raise ConfigError(problems)
    return config


def _delivery_problems(config: Config) -> list[tuple[str, str]]:
    """A check still running when its message's visibility timeout ends is delivered to
    another worker and run twice: the timeout must leave room for the longest check."""
    longest = max((check.timeout for check in config.scheduled_checks()), default=0.0)
    if config.visibility_timeout < 2 * longest:
        return [
            (
                "visibility_timeout",
                f"{config.visibility_timeout}s is less than twice the longest check timeout "
                f"({longest:g}s): a check still running would be delivered again",
            )
        ]
    return []


def _is_redis(url: str) -> bool:
    return url.startswith(("redis://", "rediss://", "unix://"))


def _broker_problems(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    broker, redis_url = data.get("broker_url"), data.get("redis_url")
    if isinstance(broker, str) and not _is_redis(broker) and not redis_url:
        return [
            (
                "redis_url",
                "required when the broker is not Redis (per-target limits and state live in Redis)",
            )
        ]
    return []


def _valid_parts(
    data: Mapping[str, Any],
) -> tuple[Defaults | None, set[str] | None, list[_HostFacts]]:
    # Some part is invalid: still check the rules across fields on the parts that are valid,
    # so that one run reports everything.
    defaults: Defaults | None = None
    sites: set[str] | None = None
    hosts: list[_HostFacts] = []
    with suppress(ValidationError):
        defaults = Defaults.model_validate(data.get("defaults", {}))
    with suppress(ValidationError):
        sites = set(TypeAdapter(Sites).validate_python(data.get("sites")))
    raw_hosts = data.get("hosts")
    for index, raw in enumerate(raw_hosts if isinstance(raw_hosts, list) else []):
        try:
            host = Host.model_validate(raw)
        except ValidationError:
            # Still check its name and site, when they are at least text.
            fields = raw if isinstance(raw, dict) else {}
            name, site = fields.get("name"), fields.get("site")
            hosts.append(
                _HostFacts(
                    index,
                    name if isinstance(name, str) else None,
                    site if isinstance(site, str) else None,
                    None,
                )
            )
        else:
            hosts.append(_HostFacts(index, host.name, host.site, host))
    return defaults, sites, hosts


def _problem(file: str, details: ErrorDetails) -> ConfigProblem:
    kind, loc = details["type"], list(details["loc"])
    ctx = details.get("ctx", {})
    if kind == "extra_forbidden":
        reason = "unknown key"
    elif kind == "missing":
        reason = "required"
    elif kind == "union_tag_not_found":
        loc.append("type")
        reason = f"required: one of {', '.join(_FORWARDER_TYPES)}"
    elif kind == "union_tag_invalid":
        loc.append("type")
        reason = f"unknown type '{ctx.get('tag')}' (expected {', '.join(_FORWARDER_TYPES)})"
    else:
        reason = details["msg"].removeprefix("Value error, ")
    return ConfigProblem(file, _location(loc), reason)


def _location(loc: list[int | str]) -> str:
    """pydantic's ('hosts', 3, 'checks', 'message', 'to') as `hosts[3].checks.message.to`."""
    text = ""
    for position, item in enumerate(loc):
        if isinstance(item, int):
            text += f"[{item}]"
        elif item == "[key]":
            continue
        elif position >= 2 and loc[position - 2] == "forwarders" and item in _FORWARDER_TYPES:
            continue  # the discriminated union's tag, not a key of the file
        else:
            text += f".{item}" if text else item
    return text
