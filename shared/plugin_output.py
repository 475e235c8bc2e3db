"""Centreon plugin output: the bytes and exit code centreon::plugins::output prints for a check.

Collect messages and perfdata in a `PluginOutput`, then `render` them under the generic output
options (`OutputOptions`) as text, JSON, XML or OpenMetrics. `render_option_error` words an
invalid option the way the plugin does. Rendering is a pure function of its inputs.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, NamedTuple

from shared.perfdata import Perfdata
from shared.status import Status, worst

__all__ = [
    "DEFAULT_PLUGIN_NAME",
    "OutputFormat",
    "OutputOptions",
    "PluginOutput",
    "Rendered",
    "Substitution",
    "parse_change_exit",
    "parse_change_exits",
    "parse_float_precision",
    "parse_opt_exit",
    "parse_range_perfdata",
    "parse_substitution",
    "render_option_error",
    "select_output_format",
]

DEFAULT_PLUGIN_NAME = "apps::protocols::smtp::plugin"

OutputFormat = Literal["text", "json", "xml", "openmetrics"]
_FORMATS: tuple[OutputFormat, ...] = ("text", "json", "xml", "openmetrics")

# States printed on the first line before OK, in output.pm's order.
_NON_OK_DISPLAY_ORDER = (Status.CRITICAL, Status.WARNING, Status.UNKNOWN)
# Order of the short outputs in JSON/XML (a Perl hash walk there: any order is faithful).
_STRUCTURED_ORDER = (*_NON_OK_DISPLAY_ORDER, Status.OK)
# Perfdata keys in JSON, in the order of the plugin's sample output (again a Perl hash walk).
_JSON_PERF_KEYS = ("min", "warning", "unit", "mode", "critical", "label", "value", "max")
_XML_PERF_KEYS = ("label", "value", "unit", "warning", "critical", "min", "max", "mode")
_STATUS_METRIC = "plugin.mode.status"


# --------------------------------------------------------------------------- Perl regexes


def _translate_perl_regex(pattern: str) -> str:
    """Rewrite the few Perl-only regex spellings into Python's; the rest is shared syntax."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith(("\\z", "\\Z"), i):
            out.append(r"\Z" if pattern[i + 1] == "z" else r"(?=\n?\Z)")
            i += 2
        elif pattern.startswith("\\k<", i) and (end := pattern.find(">", i + 3)) != -1:
            out.append(f"(?P={pattern[i + 3 : end]})")
            i = end + 1
        elif pattern[i] == "\\":
            out.append(pattern[i : i + 2])
            i += 2
        elif pattern.startswith("(?<", i) and not pattern.startswith(("(?<=", "(?<!"), i):
            out.append("(?P<")
            i += 3
        else:
            out.append(pattern[i])
            i += 1
    return "".join(out)


@lru_cache(maxsize=128)
def _perl_regex(pattern: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(_translate_perl_regex(pattern), flags)


def _matches(pattern: str, text: str) -> bool:
    return _perl_regex(pattern).search(text) is not None


def _balanced_braces(text: str) -> bool:
    # The plugin evals `s{pattern}{replacement}`: an unbalanced brace breaks the code.
    depth = 0
    escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


_REPLACEMENT_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "e": "\x1b", "a": "\x07"}
_UNSUPPORTED_ESCAPES = frozenset("ULulQE")


def _compile_replacement(replacement: str) -> Callable[[re.Match[str]], str]:
    """The replacement of `s{...}{...}` as Perl interpolates it: `$1`, `${1}`, `$&` and
    backslash escapes. Raises ValueError where the plugin's eval would fail (or where we do
    not emulate Perl: case modifiers, variables)."""
    parts: list[str | int] = []
    literal: list[str] = []
    i = 0
    n = len(replacement)

    def flush() -> None:
        if literal:
            parts.append("".join(literal))
            literal.clear()

    while i < n:
        ch = replacement[i]
        if ch == "\\":
            if i + 1 >= n:
                raise ValueError("trailing backslash")
            nxt = replacement[i + 1]
            if nxt in _UNSUPPORTED_ESCAPES:
                raise ValueError(f"unsupported escape \\{nxt}")
            if nxt == "x" and re.fullmatch(r"[0-9A-Fa-f]{2}", replacement[i + 2 : i + 4]):
                literal.append(chr(int(replacement[i + 2 : i + 4], 16)))
                i += 4
                continue
            literal.append("\0" if nxt == "0" else _REPLACEMENT_ESCAPES.get(nxt, nxt))
            i += 2
        elif ch == "$":
            group = re.match(r"\$(?:(\d+)|\{(\d+)\}|(&))", replacement[i:])
            if group is None:
                raise ValueError("variable interpolation")
            flush()
            parts.append(0 if group.group(3) else int(group.group(1) or group.group(2)))
            i += group.end()
        elif (
            ch == "@" and i + 1 < n and (replacement[i + 1].isalpha() or replacement[i + 1] in "_{")
        ):
            raise ValueError("array interpolation")
        else:
            literal.append(ch)
            i += 1
    flush()

    def expand(match: re.Match[str]) -> str:
        pieces: list[str] = []
        for part in parts:
            if isinstance(part, str):
                pieces.append(part)
            elif part <= (match.re.groups or 0):
                pieces.append(match.group(part) or "")
        return "".join(pieces)

    return expand


_MODIFIER_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}
_NEUTRAL_MODIFIERS = frozenset("godulanpc")


class Substitution(NamedTuple):
    """One `--change-short-output` / `--change-long-output` rule: `pattern~replacement~modifier`."""

    pattern: str
    replacement: str = ""
    modifiers: str = ""

    def apply(self, text: str) -> str:
        """Run `s{pattern}{replacement}modifiers` on `text`. Like the plugin (which evals the
        code and ignores failures), a rule that cannot run leaves the text unchanged."""
        flags = 0
        for modifier in self.modifiers:
            if modifier == "r":  # returns a copy: the plugin's variable is left unchanged
                return text
            if modifier in _MODIFIER_FLAGS:
                flags |= _MODIFIER_FLAGS[modifier]
            elif modifier == "a":
                flags |= re.ASCII
            elif modifier not in _NEUTRAL_MODIFIERS:
                return text  # `e` (Perl code) and anything Perl rejects
        if not (_balanced_braces(self.pattern) and _balanced_braces(self.replacement)):
            return text
        try:
            regex = _perl_regex(self.pattern, flags)
            replace = _compile_replacement(self.replacement)
        except (re.error, ValueError):
            return text
        return regex.sub(replace, text, count=0 if "g" in self.modifiers else 1)


# --------------------------------------------------------------------------- options


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
                    _perl_regex(pattern)
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


# --------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class Rendered:
    """What the plugin prints on stdout and the code it exits with."""

    text: str
    exit_code: int


def _chomp(text: str) -> str:
    return text[:-1] if text.endswith("\n") else text


@dataclass(frozen=True)
class _Report:
    """Everything one rendering needs, whether for a check or for an option error."""

    shorts: dict[Status, list[str]]
    longs: list[str]
    perfdata: list[Perfdata] | None  # None: perfdata ignored
    status: Status
    exit_word: str  # top-level `exit` of JSON/XML: "OK" for checks, "unknown" for option errors
    show_long: bool
    change_long: bool


def _kept_perfdata(perfdata: Iterable[Perfdata], options: OutputOptions) -> list[Perfdata]:
    kept: list[Perfdata] = []
    label_filter, uom_filter = options.filter_perfdata, options.filter_uom
    for perf in perfdata:
        if label_filter is not None and not _matches(label_filter, perf.quoted_label):
            continue
        masked = uom_filter is not None and not _matches(uom_filter, perf.unit)
        kept.append(dataclasses.replace(perf, unit="") if masked else perf)
    return kept


def _long_lines(report: _Report, options: OutputOptions) -> list[str]:
    if not report.show_long:
        return []
    if not (report.change_long and options.change_long_output):
        return list(report.longs)
    text = "\n".join(report.longs)
    for rule in options.change_long_output:
        text = rule.apply(text)
    lines = text.split("\n")
    while lines and lines[-1] == "":  # Perl's split drops trailing empty fields
        lines.pop()
    return lines


def _render_text(report: _Report, options: OutputOptions) -> str:
    labelled = not options.ignore_label
    short = ""
    for status in _NON_OK_DISPLAY_ORDER:
        if status in report.shorts:
            label = f"{status.name}: " if labelled else ""
            short += label + " - ".join(report.shorts[status]) + " "
    if report.status is Status.OK:
        short += ("OK: " if labelled else "") + " - ".join(report.shorts.get(Status.OK, [])) + " "
    for rule in options.change_short_output:
        short = rule.apply(short)

    perf_items = [p.render(options.range_perfdata) for p in report.perfdata or []]
    first_line = short + ("|" + "".join(f" {item}" for item in perf_items) if perf_items else "")
    longs = _long_lines(report, options)
    return first_line + "\n" + "".join(f"{line}\n" for line in longs)


_JSON_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}


def _json_string(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in _JSON_ESCAPES:
            out.append(_JSON_ESCAPES[ch])
        elif ch < " ":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _json_object(members: Iterable[tuple[str, str]]) -> str:
    """An object from already-encoded values, keeping the given key order."""
    return "{" + ",".join(f"{_json_string(key)}:{value}" for key, value in members) + "}"


def _short_entries(report: _Report) -> list[tuple[Status, str]]:
    return [
        (status, message)
        for status in _STRUCTURED_ORDER
        for message in report.shorts.get(status, [])
    ]


def _message(status: Status, message: str, options: OutputOptions) -> str:
    return message if options.ignore_label else f"{status.name}: {message}"


def _perf_fields(perf: Perfdata, options: OutputOptions) -> dict[str, str]:
    return {
        "label": perf.quoted_label,
        "value": perf.value_text,
        "unit": perf.unit,
        "warning": perf.warning_text(options.range_perfdata),
        "critical": perf.critical_text(options.range_perfdata),
        "min": perf.min_text,
        "max": perf.max_text,
        "mode": options.mode,
    }


def _render_json(report: _Report, options: OutputOptions) -> str:
    outputs = [
        _json_object(
            [
                ("exit", _json_string(status.name)),
                ("type", "1"),
                ("msg", _json_string(_message(status, message, options))),
            ]
        )
        for status, message in _short_entries(report)
    ]
    outputs += [
        _json_object([("type", "2"), ("msg", _json_string(line))])
        for line in _long_lines(report, options)
    ]
    perfdatas = []
    for perf in report.perfdata or []:
        fields = _perf_fields(perf, options)
        # Perl encodes what the mode passed as a number (min, max, an unformatted value) as a
        # JSON number, and strings (sprintf'd values, thresholds, empty fields) as strings.
        raw = {
            "min": perf.min is not None,
            "max": perf.max is not None,
            "value": perf.precision is None,
        }
        perfdatas.append(
            _json_object(
                (key, fields[key] if raw.get(key) else _json_string(fields[key]))
                for key in _JSON_PERF_KEYS
            )
        )
    plugin = _json_object(
        [
            ("perfdatas", "[" + ",".join(perfdatas) + "]"),
            ("outputs", "[" + ",".join(outputs) + "]"),
            ("exit", _json_string(report.exit_word)),
            ("name", _json_string(options.plugin_name)),
            ("mode", _json_string(options.mode)),
        ]
    )
    return _json_object([("plugin", plugin)])


def _xml_escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    )


def _xml_leaf(name: str, text: str, depth: int) -> str:
    indent = "  " * depth
    return (
        f"{indent}<{name}/>\n" if text == "" else f"{indent}<{name}>{_xml_escape(text)}</{name}>\n"
    )


def _xml_parent(name: str, children: list[str], depth: int) -> str:
    indent = "  " * depth
    if not children:
        return f"{indent}<{name}/>\n"
    return f"{indent}<{name}>\n" + "".join(children) + f"{indent}</{name}>\n"


def _render_xml(report: _Report, options: OutputOptions) -> str:
    """XML::LibXML's `toString(1)`: declaration, two-space indent, `<x/>` for empty elements."""
    outputs = [
        _xml_parent(
            "output",
            [
                _xml_leaf("type", "1", 3),
                _xml_leaf("exit", status.name, 3),
                _xml_leaf("msg", _message(status, message, options), 3),
            ],
            2,
        )
        for status, message in _short_entries(report)
    ]
    outputs += [
        _xml_parent("output", [_xml_leaf("type", "2", 3), _xml_leaf("msg", line, 3)], 2)
        for line in _long_lines(report, options)
    ]
    perfdatas = []
    for perf in report.perfdata or []:
        fields = _perf_fields(perf, options)
        perfdatas.append(
            _xml_parent("perfdata", [_xml_leaf(key, fields[key], 3) for key in _XML_PERF_KEYS], 2)
        )
    root = _xml_parent(
        "plugin",
        [
            _xml_leaf("name", options.plugin_name, 1),
            _xml_leaf("mode", options.mode, 1),
            _xml_leaf("exit", report.exit_word, 1),
            _xml_parent("outputs", outputs, 1),
            _xml_parent("perfdatas", perfdatas, 1),
        ],
        0,
    )
    return '<?xml version="1.0" encoding="utf-8"?>\n' + root


def _render_openmetrics(perfdata: Iterable[Perfdata], options: OutputOptions, now: float) -> str:
    """One line per metric: `label{plugin="...",mode="...",unit="s",...} value time_ms`; the
    unit, thresholds, bounds and instance appear only when not empty."""
    time_ms = int(now * 1000)
    lines = []
    for perf in _kept_perfdata(perfdata, options):
        fields = _perf_fields(perf, options)
        instance, sep, label = fields["label"].partition("#")
        if not sep:
            instance, label = "", instance
        fields["instance"] = instance
        bucket = f'plugin="{options.plugin_name}",mode="{options.mode}"'
        for key in ("unit", "warning", "critical", "min", "max", "instance"):
            if fields[key] != "":
                bucket += f',{key}="{fields[key]}"'
        lines.append(f"{label}{{{bucket}}} {fields['value']} {time_ms}\n")
    return "".join(lines)


def _render(report: _Report, options: OutputOptions) -> str:
    if options.output_format == "xml":
        return _render_xml(report, options)
    if options.output_format == "json":
        return _render_json(report, options)
    return _render_text(report, options)


class PluginOutput:
    """Collects what a check reports, as a mode does with output_add / perfdata_add."""

    def __init__(self) -> None:
        self._shorts: dict[Status, list[str]] = {}
        self._longs: list[str] = []
        self._perfdata: list[Perfdata] = []

    def add_message(self, status: Status, short: str | None, long: str | None = None) -> None:
        """A short message (first line; sets the state) and/or a long one (`--verbose` lines)."""
        if short is not None:
            self._shorts.setdefault(status, []).append(_chomp(short))
        if long is not None:
            self._longs.append(_chomp(long))

    def add_perfdata(self, perfdata: Perfdata) -> None:
        self._perfdata.append(perfdata)

    @property
    def status(self) -> Status:
        """The global state (CRITICAL > UNKNOWN > WARNING > OK), before `--change-exit`."""
        return worst(*self._shorts)

    def render(self, options: OutputOptions, now: float | None = None) -> Rendered:
        """The plugin's stdout and exit code. `now` (epoch seconds) stamps OpenMetrics lines;
        the current time when omitted."""
        status = self.status
        if options.output_format == "openmetrics":
            metrics = [*self._perfdata, Perfdata(_STATUS_METRIC, float(status))]
            text = _render_openmetrics(metrics, options, time.time() if now is None else now)
            return Rendered(text, options.exit_code(status))
        report = _Report(
            shorts=self._shorts,
            longs=self._longs,
            perfdata=None if options.ignore_perfdata else _kept_perfdata(self._perfdata, options),
            status=status,
            exit_word=status.name,
            show_long=options.shows_long_output,
            change_long=True,
        )
        return Rendered(_render(report, options), options.exit_code(status))


def render_option_error(message: str, options: OutputOptions, long: Sequence[str] = ()) -> Rendered:
    """What the plugin prints when an option is wrong: `UNKNOWN: <message> ` in the state of
    `--opt-exit`, no perfdata, long lines always shown (JSON/XML top-level exit in lower case).

    Errors found while reading the output options themselves (`--range-perfdata`,
    `--opt-exit`) come before the plugin reads `--change-exit`: pass options without it.
    """
    status = options.opt_exit
    if options.output_format == "openmetrics":
        return Rendered("", options.exit_code(status))  # the plugin prints no metric at all
    report = _Report(
        shorts={status: [_chomp(message)]},
        longs=[_chomp(line) for line in long],
        perfdata=None,
        status=status,
        exit_word=status.name.lower(),
        show_long=True,
        change_long=False,
    )
    return Rendered(_render(report, options), options.exit_code(status))
