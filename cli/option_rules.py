"""How a command-line value becomes a typed one, or an `OptionError` naming its option: the
rules `smtp-checks check` applies to the plugin's options and to a round trip's receive
options alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from smtp_checks.shared.errors import OptionError
from smtp_checks.shared.output.thresholds import ThresholdError, Thresholds
from smtp_checks.shared.probe import validation

_T = TypeVar("_T")
_VERIFY_NONE = frozenset({"0", "SSL_VERIFY_NONE"})
_VERIFY_PEER = frozenset({"1", "SSL_VERIFY_PEER"})


def checked(rule: Callable[[str], _T], value: str, option: str) -> _T:
    """`value` if `rule` takes it, else the OptionError naming `option` and what is wrong."""
    try:
        return rule(value)
    except ValueError as error:
        raise OptionError(f"Wrong {option}: {error}") from None


def thresholds(warning: str | None, critical: str | None, suffix: str) -> Thresholds:
    """Thresholds; `suffix` names the option family in the error (`warning-cert-days`)."""
    try:
        return Thresholds.parse(warning, critical)
    except ThresholdError as error:
        raise OptionError(str(error).replace(" threshold ", f"{suffix} threshold ", 1)) from None


def timeout(text: str, option: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise OptionError(f"Wrong {option} option '{text}'") from None
    try:
        return validation.timeout(value)
    except ValueError as error:
        raise OptionError(f"Wrong {option} option: {error}") from None


def port(text: str, option: str = "port") -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise OptionError(f"Wrong {option} '{text}'")
    return int(text)


def verify_mode(text: str) -> bool:
    """`ssl_verify_mode=`: True to verify the server's certificate."""
    if text not in _VERIFY_NONE | _VERIFY_PEER:
        raise OptionError(
            f"Wrong ssl_verify_mode '{text}' (SSL_VERIFY_NONE or 0, SSL_VERIFY_PEER or 1)"
        )
    return text in _VERIFY_PEER
