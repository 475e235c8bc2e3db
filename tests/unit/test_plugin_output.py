"""The plugin's output, byte for byte, from the samples of the reference and output.pm."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtp_checks.shared.output.options import (
    OutputOptions,
    parse_change_exit,
    parse_change_exits,
    parse_float_precision,
    parse_opt_exit,
    parse_range_perfdata,
    parse_substitution,
    select_output_format,
)
from smtp_checks.shared.output.perfdata import Perfdata
from smtp_checks.shared.output.perl_regex import Substitution
from smtp_checks.shared.output.plugin_output import PluginOutput
from smtp_checks.shared.output.renderers import Rendered, render_option_error
from smtp_checks.shared.output.status import EXIT_PRECEDENCE, SEVERITY_ORDER, Status, worst
from smtp_checks.shared.output.thresholds import Thresholds

NOW = 1_700_000_000.123


def _time(value: float, warning: str | None = None, critical: str | None = None) -> Perfdata:
    thresholds = Thresholds.parse(warning, critical)
    return Perfdata("time", value, "s", thresholds.warning, thresholds.critical, precision=3)


def login_success(
    value: float, warning: str | None = None, critical: str | None = None
) -> PluginOutput:
    """What the login mode reports after a successful session."""
    thresholds = Thresholds.parse(warning, critical)
    output = PluginOutput()
    output.add_message(thresholds.evaluate(value), f"Response time {value:.3f} second(s)")
    output.add_perfdata(_time(value, warning, critical))
    return output


def message_success(
    value: float, warning: str | None = None, critical: str | None = None
) -> PluginOutput:
    """What the message mode reports: "Message sent" (OK), then the response time."""
    thresholds = Thresholds.parse(warning, critical)
    output = PluginOutput()
    output.add_message(Status.OK, "Message sent")
    output.add_message(thresholds.evaluate(value), f"Response time {value:.3f} second(s)")
    output.add_perfdata(_time(value, warning, critical))
    return output


def failure(status: Status, message: str) -> PluginOutput:
    output = PluginOutput()
    output.add_message(status, message)
    return output


# --------------------------------------------------------------------------- text: the samples


@pytest.mark.parametrize(
    ("output", "line", "exit_code"),
    [
        (login_success(0.005), "OK: Response time 0.005 second(s) | 'time'=0.005s;;;;", 0),
        (login_success(0.046), "OK: Response time 0.046 second(s) | 'time'=0.046s;;;;", 0),
        (
            message_success(0.091),
            "OK: Message sent - Response time 0.091 second(s) | 'time'=0.091s;;;;",
            0,
        ),
        (
            login_success(1.234, "1", "2"),
            "WARNING: Response time 1.234 second(s) | 'time'=1.234s;0:1;0:2;;",
            1,
        ),
        (
            message_success(1.234, "1", "2"),
            "WARNING: Response time 1.234 second(s) | 'time'=1.234s;0:1;0:2;;",
            1,
        ),
        (
            login_success(0.002, "0"),
            "WARNING: Response time 0.002 second(s) | 'time'=0.002s;0:0;;;",
            1,
        ),
        (
            login_success(0.002, "0", "5"),
            "WARNING: Response time 0.002 second(s) | 'time'=0.002s;0:0;0:5;;",
            1,
        ),
        # OK messages show only when the final state is OK: no "Message sent" here.
        (
            message_success(0.089, "0.001"),
            "WARNING: Response time 0.089 second(s) | 'time'=0.089s;0:0.001;;;",
            1,
        ),
        (
            login_success(2.5, "1", "2"),
            "CRITICAL: Response time 2.500 second(s) | 'time'=2.500s;0:1;0:2;;",
            2,
        ),
    ],
)
def test_success_lines_have_perfdata_and_no_trailing_space(
    output: PluginOutput, line: str, exit_code: int
) -> None:
    assert output.render(OutputOptions()) == Rendered(line + "\n", exit_code)


def test_false_ok_of_the_perl_plugin_is_still_worded_the_same() -> None:
    rendered = message_success(0.003).render(OutputOptions(mode="message"))
    assert rendered.text.startswith("OK: Message sent - Response time 0.003 second(s)")
    assert rendered.text == "OK: Message sent - Response time 0.003 second(s) | 'time'=0.003s;;;;\n"


_FAILURE_TEXTS = [
    "Connection refused",
    "Name or service not known",
    "Net::SMTP: 554 5.3.2 Service unavailable",
    "Net::SMTP: 550 5.7.1 HELO rejected",
    "5.7.8 Error: authentication failed",
    "5.7.8 Error: authentication failed: authentication failure",
    "Command unknown: 'AUTH'",
    "timeout",
    "SSL connect attempt failed error:...certificate verify failed",
    "SSL_verify_mode must be a number and not a string ...",
]


@pytest.mark.parametrize("reason", _FAILURE_TEXTS)
def test_login_connection_failures_are_critical_and_end_with_a_space(reason: str) -> None:
    rendered = failure(Status.CRITICAL, f"Unable to connect to SMTP: {reason}").render(
        OutputOptions()
    )
    assert rendered == Rendered(f"CRITICAL: Unable to connect to SMTP: {reason} \n", 2)


@pytest.mark.parametrize("reason", _FAILURE_TEXTS)
def test_message_connection_failures_are_unknown(reason: str) -> None:
    rendered = failure(Status.UNKNOWN, f"Unable to connect to SMTP: {reason}").render(
        OutputOptions(mode="message")
    )
    assert rendered == Rendered(f"UNKNOWN: Unable to connect to SMTP: {reason} \n", 3)


@pytest.mark.parametrize(
    ("status", "message", "text", "exit_code"),
    [
        (
            Status.CRITICAL,
            "Unable to connect to SMTP: Connection refused",
            "CRITICAL: Unable to connect to SMTP: Connection refused \n",
            2,
        ),
        (
            Status.CRITICAL,
            "Unable to connect to SMTP: 5.7.8 Error: authentication failed: authentication failure",
            "CRITICAL: Unable to connect to SMTP: 5.7.8 Error: authentication failed: "
            "authentication failure \n",
            2,
        ),
        (
            Status.CRITICAL,
            "Unable to connect to SMTP: Command unknown: 'AUTH'",
            "CRITICAL: Unable to connect to SMTP: Command unknown: 'AUTH' \n",
            2,
        ),
        (Status.CRITICAL, "Unable to send message.", "CRITICAL: Unable to send message. \n", 2),
        (
            Status.UNKNOWN,
            "Unable to send message: timeout",
            "UNKNOWN: Unable to send message: timeout \n",
            3,
        ),
        (
            Status.CRITICAL,
            "Unable to send message: 550 5.1.1 <nobody@elsewhere.example>: "
            "Recipient address rejected",
            "CRITICAL: Unable to send message: 550 5.1.1 <nobody@elsewhere.example>: "
            "Recipient address rejected \n",
            2,
        ),
    ],
)
def test_failure_lines(status: Status, message: str, text: str, exit_code: int) -> None:
    assert failure(status, message).render(OutputOptions()) == Rendered(text, exit_code)


def test_a_trailing_newline_of_a_message_is_chomped() -> None:
    assert failure(Status.CRITICAL, "timeout\n").render(OutputOptions()).text == (
        "CRITICAL: timeout \n"
    )


def test_no_message_at_all_is_an_empty_ok() -> None:
    assert PluginOutput().render(OutputOptions()) == Rendered("OK:  \n", 0)


# --------------------------------------------------------------------------- states


def _all_states() -> PluginOutput:
    output = PluginOutput()
    output.add_message(Status.OK, "fine")
    output.add_message(Status.UNKNOWN, "u1")
    output.add_message(Status.WARNING, "w1")
    output.add_message(Status.CRITICAL, "c1")
    output.add_message(Status.WARNING, "w2")
    return output


def test_states_print_in_severity_order_and_same_state_messages_join() -> None:
    assert _all_states().render(OutputOptions()) == Rendered(
        "CRITICAL: c1 WARNING: w1 - w2 UNKNOWN: u1 \n", 2
    )


def test_unknown_beats_warning_for_the_exit_code_but_prints_after_it() -> None:
    output = PluginOutput()
    output.add_message(Status.UNKNOWN, "u")
    output.add_message(Status.WARNING, "w")
    assert output.status is Status.UNKNOWN
    assert output.render(OutputOptions()) == Rendered("WARNING: w UNKNOWN: u \n", 3)


def test_status_module_orders() -> None:
    assert SEVERITY_ORDER == (Status.CRITICAL, Status.WARNING, Status.UNKNOWN, Status.OK)
    assert EXIT_PRECEDENCE == (Status.CRITICAL, Status.UNKNOWN, Status.WARNING, Status.OK)
    assert worst() is Status.OK
    assert worst(Status.WARNING, Status.UNKNOWN) is Status.UNKNOWN
    assert worst(Status.OK, Status.WARNING) is Status.WARNING
    assert worst(Status.UNKNOWN, Status.CRITICAL, Status.OK) is Status.CRITICAL


@given(st.lists(st.sampled_from(list(Status)), min_size=1))
def test_global_state_is_the_bitmask_or_of_output_pm(statuses: list[Status]) -> None:
    masks = {Status.OK: 0, Status.WARNING: 1, Status.UNKNOWN: 3, Status.CRITICAL: 7}
    combined = 0
    for status in statuses:
        combined |= masks[status]
    assert worst(*statuses) is {v: k for k, v in masks.items()}[combined]


# --------------------------------------------------------------------------- generic options


def test_change_exit_changes_the_exit_code_only() -> None:
    output = failure(Status.CRITICAL, "Unable to connect to SMTP: Connection refused")
    options = OutputOptions(change_exit=((Status.CRITICAL, Status.WARNING),))
    assert output.render(options) == Rendered(
        "CRITICAL: Unable to connect to SMTP: Connection refused \n", 1
    )


def test_change_exit_is_one_step_not_a_chain() -> None:
    options = OutputOptions(
        change_exit=((Status.UNKNOWN, Status.CRITICAL), (Status.CRITICAL, Status.OK))
    )
    assert failure(Status.UNKNOWN, "x").render(options).exit_code == 2
    assert failure(Status.CRITICAL, "x").render(options).exit_code == 0


def test_output_ignore_label() -> None:
    options = OutputOptions(ignore_label=True)
    assert login_success(0.005).render(options).text == (
        "Response time 0.005 second(s) | 'time'=0.005s;;;;\n"
    )
    assert _all_states().render(options).text == "c1 w1 - w2 u1 \n"


def test_output_ignore_perfdata_leaves_the_trailing_space() -> None:
    assert login_success(0.005).render(OutputOptions(ignore_perfdata=True)) == Rendered(
        "OK: Response time 0.005 second(s) \n", 0
    )


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        ("time", "OK: Response time 0.005 second(s) | 'time'=0.005s;;;;\n"),
        ("^ti", "OK: Response time 0.005 second(s) | 'time'=0.005s;;;;\n"),
        ("^foo", "OK: Response time 0.005 second(s) \n"),
    ],
)
def test_filter_perfdata(pattern: str, text: str) -> None:
    assert login_success(0.005).render(OutputOptions(filter_perfdata=pattern)).text == text


def test_filter_perfdata_keeps_only_matching_items() -> None:
    output = login_success(0.005)
    output.add_perfdata(Perfdata("connect", 0.001, "s", precision=3))
    assert output.render(OutputOptions(filter_perfdata="^conn")).text == (
        "OK: Response time 0.005 second(s) | 'connect'=0.001s;;;;\n"
    )
    assert output.render(OutputOptions()).text == (
        "OK: Response time 0.005 second(s) | 'time'=0.005s;;;; 'connect'=0.001s;;;;\n"
    )


def test_filter_uom_masks_units_that_do_not_match() -> None:
    output = login_success(0.005)
    assert output.render(OutputOptions(filter_uom="^ms$")).text.endswith("'time'=0.005;;;;\n")
    assert output.render(OutputOptions(filter_uom="s")).text.endswith("'time'=0.005s;;;;\n")


@pytest.mark.parametrize(
    ("mode", "perfdata"),
    [(0, "'time'=1.234s;0:1;0:2;;"), (1, "'time'=1.234s;1;2;;"), (2, "'time'=1.234s;;;;")],
)
def test_range_perfdata(mode: int, perfdata: str) -> None:
    rendered = login_success(1.234, "1", "2").render(OutputOptions(range_perfdata=mode))
    assert rendered.text == f"WARNING: Response time 1.234 second(s) | {perfdata}\n"


@pytest.mark.parametrize(
    ("rule", "text"),
    [
        # The example of output.pm's documentation.
        ("OK~Up~gi", "Up: Response time 0.005 second(s) | 'time'=0.005s;;;;\n"),
        ("ok~Up~g", "OK: Response time 0.005 second(s) | 'time'=0.005s;;;;\n"),
        ("e~E", "OK: REsponse time 0.005 second(s) | 'time'=0.005s;;;;\n"),
        ("e~E~g", "OK: REsponsE timE 0.005 sEcond(s) | 'time'=0.005s;;;;\n"),
        (r" second\(s\)~s", "OK: Response time 0.005s | 'time'=0.005s;;;;\n"),
        (r"(\d+)\.(\d+)~$2.$1", "OK: Response time 005.0 second(s) | 'time'=0.005s;;;;\n"),
        (r"(\d+)\.(\d+)~${2}ms", "OK: Response time 005ms second(s) | 'time'=0.005s;;;;\n"),
        (r"Response~[$&]", "OK: [Response] time 0.005 second(s) | 'time'=0.005s;;;;\n"),
        ("Response time ", "OK: 0.005 second(s) | 'time'=0.005s;;;;\n"),
        (r" $~!", "OK: Response time 0.005 second(s)!| 'time'=0.005s;;;;\n"),
        (r"(?<d>\d)\k<d>~X", "OK: Response time 0.X5 second(s) | 'time'=0.005s;;;;\n"),
        (r"OK: (?<rest>.*)~\k<rest>", "k<rest>| 'time'=0.005s;;;;\n"),
        # Rules the plugin's eval cannot run leave the text alone.
        ("OK~Up~e", "OK: Response time 0.005 second(s) | 'time'=0.005s;;;;\n"),
        ("OK~Up~r", "OK: Response time 0.005 second(s) | 'time'=0.005s;;;;\n"),
        ("(~x", "OK: Response time 0.005 second(s) | 'time'=0.005s;;;;\n"),
        ("OK~$name", "OK: Response time 0.005 second(s) | 'time'=0.005s;;;;\n"),
        ("OK~}", "OK: Response time 0.005 second(s) | 'time'=0.005s;;;;\n"),
        ("OK~\\U$0", "OK: Response time 0.005 second(s) | 'time'=0.005s;;;;\n"),
    ],
)
def test_change_short_output(rule: str, text: str) -> None:
    substitution = parse_substitution(rule)
    assert substitution is not None
    rendered = login_success(0.005).render(OutputOptions(change_short_output=(substitution,)))
    assert rendered.text == text


def test_change_short_output_rules_apply_in_order_and_spare_perfdata() -> None:
    rules = (Substitution("time", "delay"), Substitution("delay", "latency"))
    rendered = login_success(0.005).render(OutputOptions(change_short_output=rules))
    assert rendered.text == "OK: Response latency 0.005 second(s) | 'time'=0.005s;;;;\n"


def test_substitution_replacement_escapes() -> None:
    assert Substitution("a", r"\t\$\\x\x41").apply("a") == "\t$\\xA"
    assert Substitution("a", "@").apply("a") == "@"
    assert Substitution("a", "@x").apply("a") == "a"  # array interpolation: eval fails
    assert Substitution("(a)|b", "[$1]", "g").apply("ab") == "[a][]"
    assert Substitution("a", "$9").apply("a") == ""
    assert Substitution("A", "b", "i").apply("xa") == "xb"
    assert Substitution("^b", "B", "m").apply("a\nb") == "a\nB"
    assert Substitution("a.b", "X", "s").apply("a\nb") == "X"
    assert Substitution("a b", "X", "x").apply("ab") == "X"
    assert Substitution(r"a\z", "X").apply("a\na") == "a\nX"
    assert Substitution(r"a\Z", "X").apply("a\n") == "X\n"


# --------------------------------------------------------------------------- verbose


def _with_long_output() -> PluginOutput:
    output = login_success(0.005)
    output.add_message(Status.OK, None, "Connected to 192.0.2.10:25")
    output.add_message(Status.OK, None, "TLS 1.3 TLS_AES_256_GCM_SHA384")
    return output


def test_long_output_lines_follow_the_first_line_with_verbose() -> None:
    assert _with_long_output().render(OutputOptions(verbose=True)).text == (
        "OK: Response time 0.005 second(s) | 'time'=0.005s;;;;\n"
        "Connected to 192.0.2.10:25\n"
        "TLS 1.3 TLS_AES_256_GCM_SHA384\n"
    )


def test_long_output_is_hidden_without_verbose_and_shown_with_debug() -> None:
    output = _with_long_output()
    assert output.render(OutputOptions()).text.count("\n") == 1
    assert output.render(OutputOptions(debug=True)).text.count("\n") == 3


def test_long_messages_do_not_change_the_state() -> None:
    output = login_success(0.005)
    output.add_message(Status.CRITICAL, None, "only a detail")
    assert output.render(OutputOptions(verbose=True)) == Rendered(
        "OK: Response time 0.005 second(s) | 'time'=0.005s;;;;\nonly a detail\n", 0
    )


def test_change_long_output() -> None:
    rule = parse_substitution(r"192\.0\.2\.10~mx1~g")
    assert rule is not None
    rendered = _with_long_output().render(OutputOptions(verbose=True, change_long_output=(rule,)))
    assert rendered.text.splitlines()[1] == "Connected to mx1:25"
    joined = parse_substitution(r"\n~ / ")
    assert joined is not None
    rendered = _with_long_output().render(OutputOptions(verbose=True, change_long_output=(joined,)))
    assert rendered.text.splitlines()[1:] == [
        "Connected to 192.0.2.10:25 / TLS 1.3 TLS_AES_256_GCM_SHA384"
    ]


# --------------------------------------------------------------------------- JSON


def test_json_sample() -> None:
    output = login_success(0.002)
    rendered = output.render(OutputOptions(output_format="json"))
    assert rendered == Rendered(
        '{"plugin":{"perfdatas":[{"min":"","warning":"","unit":"s","mode":"login","critical":"",'
        '"label":"time","value":"0.002","max":""}],"outputs":[{"exit":"OK","type":1,'
        '"msg":"OK: Response time 0.002 second(s)"}],"exit":"OK",'
        '"name":"apps::protocols::smtp::plugin","mode":"login"}}',
        0,
    )


def test_json_lists_every_short_message_even_ok_ones_under_a_warning() -> None:
    rendered = message_success(0.089, "0.001").render(
        OutputOptions(output_format="json", mode="message")
    )
    assert rendered.text == (
        '{"plugin":{"perfdatas":[{"min":"","warning":"0:0.001","unit":"s","mode":"message",'
        '"critical":"","label":"time","value":"0.089","max":""}],"outputs":['
        '{"exit":"WARNING","type":1,"msg":"WARNING: Response time 0.089 second(s)"},'
        '{"exit":"OK","type":1,"msg":"OK: Message sent"}],"exit":"WARNING",'
        '"name":"apps::protocols::smtp::plugin","mode":"message"}}'
    )
    assert rendered.exit_code == 1


def test_json_with_verbose_long_output_and_no_label() -> None:
    rendered = _with_long_output().render(
        OutputOptions(output_format="json", verbose=True, ignore_label=True, ignore_perfdata=True)
    )
    assert rendered.text == (
        '{"plugin":{"perfdatas":[],"outputs":[{"exit":"OK","type":1,'
        '"msg":"Response time 0.005 second(s)"},'
        '{"type":2,"msg":"Connected to 192.0.2.10:25"},'
        '{"type":2,"msg":"TLS 1.3 TLS_AES_256_GCM_SHA384"}],"exit":"OK",'
        '"name":"apps::protocols::smtp::plugin","mode":"login"}}'
    )


def test_json_escapes_and_numbers() -> None:
    output = failure(Status.CRITICAL, 'say "hi"\\ \t\x01 é')
    output.add_perfdata(Perfdata("used", 26.93, "%", min=0.0, max=100.0))
    text = output.render(OutputOptions(output_format="json", change_exit=())).text
    assert '"msg":"CRITICAL: say \\"hi\\"\\\\ \\t\\u0001 é"' in text
    assert '{"min":0,"warning":"","unit":"%","mode":"login","critical":"",' in text
    assert '"label":"used","value":26.93,"max":100}' in text


def test_json_change_exit_leaves_the_document_alone() -> None:
    options = OutputOptions(output_format="json", change_exit=((Status.OK, Status.CRITICAL),))
    rendered = login_success(0.002).render(options)
    assert '"exit":"OK"' in rendered.text
    assert rendered.exit_code == 2


# --------------------------------------------------------------------------- XML


def test_xml_shape() -> None:
    rendered = login_success(1.234, "1", "2").render(OutputOptions(output_format="xml"))
    assert rendered == Rendered(
        '<?xml version="1.0" encoding="utf-8"?>\n'
        "<plugin>\n"
        "  <name>apps::protocols::smtp::plugin</name>\n"
        "  <mode>login</mode>\n"
        "  <exit>WARNING</exit>\n"
        "  <outputs>\n"
        "    <output>\n"
        "      <type>1</type>\n"
        "      <exit>WARNING</exit>\n"
        "      <msg>WARNING: Response time 1.234 second(s)</msg>\n"
        "    </output>\n"
        "  </outputs>\n"
        "  <perfdatas>\n"
        "    <perfdata>\n"
        "      <label>time</label>\n"
        "      <value>1.234</value>\n"
        "      <unit>s</unit>\n"
        "      <warning>0:1</warning>\n"
        "      <critical>0:2</critical>\n"
        "      <min/>\n"
        "      <max/>\n"
        "      <mode>login</mode>\n"
        "    </perfdata>\n"
        "  </perfdatas>\n"
        "</plugin>\n",
        1,
    )


def test_xml_escapes_text_and_shows_long_output_with_verbose() -> None:
    output = failure(Status.CRITICAL, "550 <a@b> & more")
    output.add_message(Status.CRITICAL, None, "detail")
    text = output.render(OutputOptions(output_format="xml", verbose=True)).text
    assert "<msg>CRITICAL: 550 &lt;a@b&gt; &amp; more</msg>" in text
    assert "    <output>\n      <type>2</type>\n      <msg>detail</msg>\n    </output>\n" in text
    assert "  <perfdatas/>\n" in text


@pytest.mark.parametrize(
    ("flags", "chosen"),
    [
        ({}, "text"),
        ({"json": True}, "json"),
        ({"xml": True}, "xml"),
        ({"xml": True, "json": True}, "xml"),
        ({"openmetrics": True}, "openmetrics"),
        ({"json": True, "openmetrics": True}, "json"),
        ({"xml": True, "openmetrics": True}, "xml"),
    ],
)
def test_xml_wins_over_json_which_wins_over_openmetrics(
    flags: dict[str, bool], chosen: str
) -> None:
    assert select_output_format(**flags) == chosen


# --------------------------------------------------------------------------- OpenMetrics


def test_openmetrics_lines() -> None:
    rendered = message_success(0.088, "1", "2").render(
        OutputOptions(output_format="openmetrics", mode="message"), now=NOW
    )
    assert rendered == Rendered(
        'time{plugin="apps::protocols::smtp::plugin",mode="message",unit="s",warning="0:1",'
        'critical="0:2"} 0.088 1700000000123\n'
        'plugin.mode.status{plugin="apps::protocols::smtp::plugin",mode="message"} 0 1700000000123\n',
        0,
    )


def test_openmetrics_status_line_carries_the_state_before_change_exit() -> None:
    output = failure(Status.CRITICAL, "Unable to connect to SMTP: Connection refused")
    options = OutputOptions(
        output_format="openmetrics", change_exit=((Status.CRITICAL, Status.WARNING),)
    )
    assert output.render(options, now=1.0) == Rendered(
        'plugin.mode.status{plugin="apps::protocols::smtp::plugin",mode="login"} 2 1000\n', 1
    )


def test_openmetrics_filters_and_range_perfdata() -> None:
    output = login_success(1.234, "1", "2")
    output.add_perfdata(Perfdata("srv#time", 1.0, "ms", min=0.0))
    options = OutputOptions(
        output_format="openmetrics", range_perfdata=1, filter_uom="^s$", filter_perfdata="time"
    )
    assert output.render(options, now=2.5).text == (
        'time{plugin="apps::protocols::smtp::plugin",mode="login",unit="s",warning="1",'
        'critical="2"} 1.234 2500\n'
        'time{plugin="apps::protocols::smtp::plugin",mode="login",min="0",instance="srv"} 1 2500\n'
    )


# --------------------------------------------------------------------------- option errors


@pytest.mark.parametrize(
    "message",
    [
        "Wrong warning threshold 'abc'.",
        "Wrong critical threshold 'abc'.",
        "Please set the hostname option",
        "Please set smtp-from option",
        "Please set smtp-to option",
        "Please set --password option.",
        "Wrong range-perfdata option '3'",
    ],
)
def test_option_errors_are_unknown_with_a_trailing_space(message: str) -> None:
    assert render_option_error(message, OutputOptions()) == Rendered(f"UNKNOWN: {message} \n", 3)


def test_option_error_sample() -> None:
    assert render_option_error("Wrong warning threshold 'abc'.", OutputOptions()).text == (
        "UNKNOWN: Wrong warning threshold 'abc'. \n"
    )


def test_option_error_follows_opt_exit_change_exit_and_ignore_label() -> None:
    message = "Wrong warning threshold 'abc'."
    assert render_option_error(message, OutputOptions(opt_exit=Status.CRITICAL)) == Rendered(
        f"CRITICAL: {message} \n", 2
    )
    assert render_option_error(message, OutputOptions(opt_exit=Status.OK)) == Rendered(
        f"OK: {message} \n", 0
    )
    changed = OutputOptions(change_exit=((Status.UNKNOWN, Status.CRITICAL),))
    assert render_option_error(message, changed) == Rendered(f"UNKNOWN: {message} \n", 2)
    assert render_option_error(message, OutputOptions(ignore_label=True)).text == f"{message} \n"


def test_option_error_always_shows_long_lines_and_never_perfdata() -> None:
    rendered = render_option_error("Cannot load module", OutputOptions(), long=["detail"])
    assert rendered.text == "UNKNOWN: Cannot load module \ndetail\n"


def test_option_error_json_has_a_lower_case_top_level_exit() -> None:
    rendered = render_option_error(
        "Wrong warning threshold 'abc'.", OutputOptions(output_format="json")
    )
    assert rendered == Rendered(
        '{"plugin":{"perfdatas":[],"outputs":[{"exit":"UNKNOWN","type":1,'
        '"msg":"UNKNOWN: Wrong warning threshold \'abc\'."}],"exit":"unknown",'
        '"name":"apps::protocols::smtp::plugin","mode":"login"}}',
        3,
    )


def test_option_error_xml() -> None:
    rendered = render_option_error(
        "Please set the hostname option", OutputOptions(output_format="xml", mode="message")
    )
    assert rendered.text == (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        "<plugin>\n"
        "  <name>apps::protocols::smtp::plugin</name>\n"
        "  <mode>message</mode>\n"
        "  <exit>unknown</exit>\n"
        "  <outputs>\n"
        "    <output>\n"
        "      <type>1</type>\n"
        "      <exit>UNKNOWN</exit>\n"
        "      <msg>UNKNOWN: Please set the hostname option</msg>\n"
        "    </output>\n"
        "  </outputs>\n"
        "  <perfdatas/>\n"
        "</plugin>\n"
    )


def test_option_error_openmetrics_prints_nothing() -> None:
    assert render_option_error("x", OutputOptions(output_format="openmetrics")) == Rendered("", 3)


# --------------------------------------------------------------------------- option parsing


def test_parse_range_perfdata() -> None:
    assert parse_range_perfdata(None) == 0
    assert parse_range_perfdata("") == 1
    assert [parse_range_perfdata(v) for v in ("0", "1", "2")] == [0, 1, 2]
    for bad in ("3", "-1", "1.0", "x"):
        with pytest.raises(ValueError, match=rf"^Wrong range-perfdata option '{bad}'$"):
            parse_range_perfdata(bad)


def test_options_refuse_a_wrong_range_perfdata_with_the_plugin_message() -> None:
    with pytest.raises(ValueError, match=r"^Wrong range-perfdata option '3'$"):
        OutputOptions(range_perfdata=3)


def test_options_refuse_invalid_regexes_and_formats() -> None:
    with pytest.raises(ValueError, match="filter-perfdata"):
        OutputOptions(filter_perfdata="(")
    with pytest.raises(ValueError, match="filter-uom"):
        OutputOptions(filter_uom="[")
    with pytest.raises(ValueError, match="output format"):
        OutputOptions(output_format="yaml")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="float precision"):
        OutputOptions(float_precision=-1)


def test_parse_change_exit() -> None:
    assert parse_change_exit("unknown=critical") == (Status.UNKNOWN, Status.CRITICAL)
    assert parse_change_exit("Critical=WARNING") == (Status.CRITICAL, Status.WARNING)
    assert parse_change_exit("ok=warning=x") == (Status.OK, Status.WARNING)
    for ignored in ("critical", "foo=ok", "ok=bar", "=ok", " ok=warning", ""):
        assert parse_change_exit(ignored) is None


def test_parse_change_exits_keeps_the_last_rule_per_state() -> None:
    assert parse_change_exits(["unknown=critical", "bad", "unknown=ok", "warning=ok"]) == (
        (Status.UNKNOWN, Status.OK),
        (Status.WARNING, Status.OK),
    )


def test_parse_opt_exit() -> None:
    assert parse_opt_exit("unknown") is Status.UNKNOWN
    assert parse_opt_exit("CRITICAL") is Status.CRITICAL
    with pytest.raises(ValueError, match=r"^Unknown value 'foo' for --opt-exit\.$"):
        parse_opt_exit("FOO")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a~b~g", Substitution("a", "b", "g")),
        ("OK~Up~gi", Substitution("OK", "Up", "gi")),
        ("a~b", Substitution("a", "b", "")),
        ("a", Substitution("a", "", "")),
        ("a~~g", Substitution("a", "", "g")),
        ("a~b~", Substitution("a", "b", "")),
        ("a~b~g~extra", Substitution("a", "b", "g")),
        ("~b", Substitution("", "b", "")),
        ("", None),
        ("~~", None),
    ],
)
def test_parse_substitution(text: str, expected: Substitution | None) -> None:
    assert parse_substitution(text) == expected


def test_parse_float_precision() -> None:
    assert parse_float_precision(None) == 8
    assert parse_float_precision("3") == 3
    assert parse_float_precision("12abc") == 12
    assert parse_float_precision("abc") == 8


# --------------------------------------------------------------------------- properties

_messages = st.text(
    alphabet=st.characters(blacklist_characters="\n\r", blacklist_categories=["Cs"]), max_size=30
)
_entries = st.lists(st.tuples(st.sampled_from(list(Status)), _messages), max_size=6)
_long_lines = st.lists(_messages.filter(lambda s: s != ""), max_size=4)
_values = st.floats(min_value=0, max_value=100, allow_nan=False)


def _build(
    entries: list[tuple[Status, str]], longs: list[str], value: float | None
) -> PluginOutput:
    output = PluginOutput()
    for status, message in entries:
        output.add_message(status, message)
    for line in longs:
        output.add_message(Status.OK, None, line)
    if value is not None:
        output.add_perfdata(_time(value, "1", "2"))
    return output


@given(
    _entries,
    _long_lines,
    st.one_of(st.none(), _values),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.sampled_from([0, 1, 2]),
)
def test_text_is_one_line_unless_verbose_long_output(
    entries: list[tuple[Status, str]],
    longs: list[str],
    value: float | None,
    verbose: bool,
    ignore_label: bool,
    ignore_perfdata: bool,
    range_perfdata: int,
) -> None:
    options = OutputOptions(
        verbose=verbose,
        ignore_label=ignore_label,
        ignore_perfdata=ignore_perfdata,
        range_perfdata=range_perfdata,
    )
    output = _build(entries, longs, value)
    rendered = output.render(options)
    lines = rendered.text.split("\n")
    assert rendered.text.endswith("\n")
    assert lines[1:-1] == (longs if verbose else [])
    first = lines[0]
    has_perfdata = value is not None and not ignore_perfdata
    assert first.endswith(" ") is not has_perfdata
    assert (" | 'time'=" in first) is has_perfdata
    assert rendered.exit_code == int(worst(*(status for status, _ in entries)))


@given(_entries, st.one_of(st.none(), _values))
def test_json_is_a_single_line_without_trailing_newline(
    entries: list[tuple[Status, str]], value: float | None
) -> None:
    rendered = _build(entries, [], value).render(OutputOptions(output_format="json"))
    assert "\n" not in rendered.text
    assert rendered.text.startswith('{"plugin":{"perfdatas":[')
    assert rendered.text.count('"type":1') == len(entries)
