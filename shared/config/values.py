"""The value types of the configuration: secret references, names that Centreon's command
file can carry, ports, rate limits, addresses, thresholds; each validated where it is read."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer, PlainValidator

from smtp_checks.shared.errors import ThresholdError
from smtp_checks.shared.output.thresholds import Thresholds
from smtp_checks.shared.probe import validation
from smtp_checks.shared.probe.spec import MechanismName


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


# The probe's own rules (shared/probe/validation.py): the CLI's options obey the same.
OneLine = Annotated[str, Field(min_length=1), AfterValidator(validation.one_line)]
HostAddress = Annotated[str, Field(min_length=1), AfterValidator(validation.host_name)]
MailAddress = Annotated[str, Field(min_length=1), AfterValidator(validation.mail_address)]
Regex = Annotated[str, AfterValidator(validation.regex)]
Timeout = Annotated[float, Field(allow_inf_nan=False), AfterValidator(validation.timeout)]
IpLiteral = Annotated[str, AfterValidator(validation.ip_literal)]
AuthMechanism = MechanismName
Command = Annotated[str, AfterValidator(validation.command)]
Port = Annotated[int, Field(ge=1, le=65535)]


def _site_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
        raise ValueError("a site name is part of a queue name: letters, digits, '_', '-', '.'")
    return value


SiteName = Annotated[str, AfterValidator(_site_name)]


def number_as_text(value: object) -> object:
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


RateLimit = Annotated[str, BeforeValidator(number_as_text), AfterValidator(_rate_limit)]


def _to_tuple(value: object) -> object:
    return (value,) if isinstance(value, str) else value


Addresses = Annotated[tuple[MailAddress, ...], BeforeValidator(_to_tuple)]


def threshold_text(label: Literal["warning", "critical"], text: str | None) -> str | None:
    try:
        if label == "warning":
            Thresholds.parse(text, None)
        else:
            Thresholds.parse(None, text)
    except ThresholdError as error:
        raise ValueError(str(error)) from None
    return text


class EngineReader(StrEnum):
    """The engine that reads what a forwarder sends; it decides how backslashes are written
    (workers/forwarders/engine_text.py). `centreon` is right for every Centreon version."""

    CENTREON = "centreon"
    NAGIOS = "nagios"


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]
