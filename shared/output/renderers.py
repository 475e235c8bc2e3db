"""Render what a check reported as centreon::plugins::output prints it: text, JSON, XML or
OpenMetrics, under the generic output options; and an option error as the plugin words it.
Pure functions of their inputs."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from smtp_checks.shared.output.options import OutputOptions
from smtp_checks.shared.output.perfdata import Perfdata
from smtp_checks.shared.output.perl_regex import matches
from smtp_checks.shared.output.status import Status

# States printed on the first line before OK, in output.pm's order.
_NON_OK_DISPLAY_ORDER = (Status.CRITICAL, Status.WARNING, Status.UNKNOWN)
# Order of the short outputs in JSON/XML (a Perl hash walk there: any order is faithful).
_STRUCTURED_ORDER = (*_NON_OK_DISPLAY_ORDER, Status.OK)
# Perfdata keys in JSON, in the order of the plugin's sample output (again a Perl hash walk).
_JSON_PERF_KEYS = ("min", "warning", "unit", "mode", "critical", "label", "value", "max")
_XML_PERF_KEYS = ("label", "value", "unit", "warning", "critical", "min", "max", "mode")
STATUS_METRIC = "plugin.mode.status"


@dataclass(frozen=True)
class Rendered:
    """What the plugin prints on stdout and the code it exits with."""

    text: str
    exit_code: int


def chomp(text: str) -> str:
    return text[:-1] if text.endswith("\n") else text


@dataclass(frozen=True)
class Report:
    """Everything one rendering needs, whether for a check or for an option error."""

    shorts: dict[Status, list[str]]
    longs: list[str]
    perfdata: list[Perfdata] | None  # None: perfdata ignored
    status: Status
    exit_word: str  # top-level `exit` of JSON/XML: "OK" for checks, "unknown" for option errors
    show_long: bool
    change_long: bool


def kept_perfdata(perfdata: Iterable[Perfdata], options: OutputOptions) -> list[Perfdata]:
    kept: list[Perfdata] = []
    label_filter, uom_filter = options.filter_perfdata, options.filter_uom
    for perf in perfdata:
        if label_filter is not None and not matches(label_filter, perf.quoted_label):
            continue
        masked = uom_filter is not None and not matches(uom_filter, perf.unit)
        kept.append(dataclasses.replace(perf, unit="") if masked else perf)
    return kept


def _long_lines(report: Report, options: OutputOptions) -> list[str]:
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


def _render_text(report: Report, options: OutputOptions) -> str:
    short, perf_items = text_parts(report, options)
    first_line = short + ("|" + "".join(f" {item}" for item in perf_items) if perf_items else "")
    longs = _long_lines(report, options)
    return first_line + "\n" + "".join(f"{line}\n" for line in longs)


def text_parts(report: Report, options: OutputOptions) -> tuple[str, list[str]]:
    """The first line's words (`OK: Response time 0.005 second(s) `) and its perfdata items,
    apart: the text renderer joins them with `|`, a forwarder as its reader wants."""
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

    return short, [p.render(options.range_perfdata) for p in report.perfdata or []]


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


def _short_entries(report: Report) -> list[tuple[Status, str]]:
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


def _render_json(report: Report, options: OutputOptions) -> str:
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


def _render_xml(report: Report, options: OutputOptions) -> str:
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


def render_openmetrics(perfdata: Iterable[Perfdata], options: OutputOptions, now: float) -> str:
    """One line per metric: `label{plugin="...",mode="...",unit="s",...} value time_ms`; the
    unit, thresholds, bounds and instance appear only when not empty."""
    time_ms = int(now * 1000)
    lines = []
    for perf in kept_perfdata(perfdata, options):
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


def render_report(report: Report, options: OutputOptions) -> str:
    if options.output_format == "xml":
        return _render_xml(report, options)
    if options.output_format == "json":
        return _render_json(report, options)
    return _render_text(report, options)


def render_option_error(message: str, options: OutputOptions, long: Sequence[str] = ()) -> Rendered:
    """What the plugin prints when an option is wrong: `UNKNOWN: <message> ` in the state of
    `--opt-exit`, no perfdata, long lines always shown (JSON/XML top-level exit in lower case).

    Errors found while reading the output options themselves (`--range-perfdata`,
    `--opt-exit`) come before the plugin reads `--change-exit`: pass options without it.
    """
    status = options.opt_exit
    if options.output_format == "openmetrics":
        return Rendered("", options.exit_code(status))  # the plugin prints no metric at all
    report = Report(
        shorts={status: [chomp(message)]},
        longs=[chomp(line) for line in long],
        perfdata=None,
        status=status,
        exit_word=status.name.lower(),
        show_long=True,
        change_long=False,
    )
    return Rendered(render_report(report, options), options.exit_code(status))
