"""The generic output options every Centreon plugin takes (`--verbose`, `--range-perfdata`,
`--change-exit`, `--output-json`...), as values, and how their texts are read."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from smtp_checks.shared.output.perl_regex import Substitution, perl_regex
from smtp_checks.shared.output.status import Status

DEFAULT_PLUGIN_NAME = "apps::protocols::smtp::plugin"

OutputFormat = Literal["text", "json", "xml", "openmetrics"]
_FORMATS: tuple[OutputFormat, ...] = ("text", "json", "xml", "openmetrics")


@dataclass(frozen=True)
class OutputOptions:
    """The generic output options every Centreon plugin takes."""

    verbose: bool = False
    debug: bool = False  # like the plugin, forces the long output
    filter_perfdata: str | None = None
    change_exit: tuple[tuple[Status, Status], ...] = ()
    range_perfdata: int = 0
    float_precision: int = 8
    opt_exit: Status = Status.UNKNOWN
    ignore_perfdata: bool = False
    ignore_label: bool = False
    change_short_output: tuple[Substitution, ...] = ()
    change_long_output: tuple[Substitution, ...] = ()
    filter_uom: str | None = None
    output_format: OutputFormat = "text"
    plugin_name: str = DEFAULT_PLUGIN_NAME
    mode: str = "login"

    def __post_init__(self) -> None:
        if self.range_perfdata not in (0, 1, 2):
            raise ValueError(f"Wrong range-perfdata option '{self.range_perfdata}'")
        if self.output_format not in _FORMATS:
            raise ValueError(f"unknown output format {self.output_format!r}")
        if self.float_precision < 0:
            raise ValueError(f"float precision must be >= 0, not {self.float_precision}")
        for option, pattern in (
            ("filter-perfdata", self.filter_perfdata),
            ("filter-uom", self.filter_uom),
        ):
            if pattern is not None:
                try:
                    perl_regex(pattern)
                except re.error:
                    # The plugin would die while printing; we refuse the option up front.
                    raise ValueError(
                        f"Invalid regular expression '{pattern}' for --{option}"
                    ) from None

    @property
    def shows_long_output(self) -> bool:
        return self.verbose or self.debug

    def exit_code(self, status: Status) -> int:
        """The process exit code for `status` after `--change-exit` (the label is unchanged)."""
        return int(dict(self.change_exit).get(status, status))


def parse_range_perfdata(text: str | None) -> int:
    """`--range-perfdata`: absent is 0, bare (empty) is 1, else 0, 1 or 2."""
    if text is None:
        return 0
    if text == "":
        return 1
    if text in ("0", "1", "2"):
        return int(text)
    raise ValueError(f"Wrong range-perfdata option '{text}'")


def parse_change_exit(text: str) -> tuple[Status, Status] | None:
    """`--change-exit=unknown=critical`; None for an entry the plugin silently ignores."""
    fields = text.split("=")
    if len(fields) < 2:
        return None
    try:
        return Status[fields[0].upper()], Status[fields[1].upper()]
    except KeyError:
        return None


def parse_change_exits(values: Iterable[str]) -> tuple[tuple[Status, Status], ...]:
    """All `--change-exit` values; a later rule for the same state replaces an earlier one."""
    rules: dict[Status, Status] = {}
    for value in values:
        rule = parse_change_exit(value)
        if rule is not None:
            rules[rule[0]] = rule[1]
    return tuple(rules.items())


def parse_opt_exit(text: str) -> Status:
    """`--opt-exit`: the state of option errors, default unknown."""
    word = text.lower()
    try:
        return Status[word.upper()]
    except KeyError:
        raise ValueError(f"Unknown value '{word}' for --opt-exit.") from None


def parse_substitution(text: str) -> Substitution | None:
    """`pattern~replacement~modifier` split as Perl's `split /~/` does (trailing empty fields
    dropped, fields past the third ignored); None when there is no pattern (ignored)."""
    fields = text.split("~")
    while fields and fields[-1] == "":
        fields.pop()
    if not fields:
        return None
    fields += [""] * (3 - len(fields))
    return Substitution(fields[0], fields[1], fields[2])


def parse_float_precision(text: str | None) -> int:
    """`--float-precision`: its leading digits, or 8."""
    match = re.match(r"\d+", text or "")
    return int(match.group()) if match else 8


def select_output_format(
    *, xml: bool = False, json: bool = False, openmetrics: bool = False
) -> OutputFormat:
    """The format the plugin uses when several are asked: XML, then JSON, then OpenMetrics."""
    if xml:
        return "xml"
    if json:
        return "json"
    if openmetrics:
        return "openmetrics"
    return "text"
