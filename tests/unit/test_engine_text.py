"""How server text is written for the engine that unescapes it: checked against the two
unescaping algorithms as the engines' own code implements them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from smtp_checks.consumer.forwarders.command_file import PIPE_BUF, command_line
from smtp_checks.consumer.forwarders.engine_text import LOOKALIKE_BACKSLASH, for_engine
from smtp_checks.shared.config import EngineReader
from tests.passive_results import passive


def centreon_engine_unescape(text: str) -> str:
    """centreon-collect engine/src/string.cc, `string::unescape(std::string&)` (23.04+):
    four replace-all passes, one after the other."""
    for escaped, plain in (("\\n", "\n"), ("\\r", "\r"), ("\\t", "\t"), ("\\\\", "\\")):
        text = text.replace(escaped, plain)
    return text


def nagios_unescape(text: str) -> str:
    """nagioscore base/utils.c, `unescape_check_result_output`: one pass, `\\\\` and `\\n`."""
    out, i = [], 0
    while i < len(text):
        pair = text[i : i + 2]
        if pair == "\\\\":
            out.append("\\")
            i += 2
        elif pair == "\\n":
            out.append("\n")
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


server_text = st.text(
    alphabet=st.sampled_from(["\\", "n", "r", "t", "a", " ", "é", ":", "x"]), max_size=40
)


@given(server_text)
def test_nagios_shows_the_text_exactly_as_sent(text: str) -> None:
    assert nagios_unescape(for_engine(text, EngineReader.NAGIOS)) == text


@given(server_text)
def test_centreon_engine_shows_one_line_and_only_control_pairs_change(text: str) -> None:
    shown = centreon_engine_unescape(for_engine(text, EngineReader.CENTREON))
    assert "\n" not in shown and "\r" not in shown and "\t" not in shown
    expected = "".join(
        LOOKALIKE_BACKSLASH if c == "\\" and text[i + 1 : i + 2] in ("n", "r", "t") else c
        for i, c in enumerate(text)
    )
    assert shown == expected


@given(server_text)
def test_the_centreon_form_stays_on_one_line_on_nagios_too(text: str) -> None:
    assert "\n" not in nagios_unescape(for_engine(text, EngineReader.CENTREON))


def test_the_example_of_the_issue() -> None:
    text = r"554 evil\nFAKE LONG OUTPUT"
    assert nagios_unescape(for_engine(text, EngineReader.NAGIOS)) == text
    assert (
        centreon_engine_unescape(for_engine(text))
        == f"554 evil{LOOKALIKE_BACKSLASH}nFAKE LONG OUTPUT"
    )


def test_a_long_line_loses_whole_perfdata_items_from_the_end() -> None:
    items = [f"'time_{n}'=0.{n:03d}s;;;;" for n in range(400)]
    result = passive("mx1", "SMTP-Login", 0, "OK: fine", " ".join(items), 1.0)
    line = command_line(result)
    assert len(line) <= PIPE_BUF and line.endswith(b"\n")
    output, _, perfdata = line[:-1].decode().partition(" | ")
    assert output.endswith(";0;OK: fine")
    kept = perfdata.split(" ")
    assert kept == items[: len(kept)] and len(kept) > 10  # whole items, from the start


def test_a_cut_never_splits_an_escape_pair() -> None:
    result = passive("mx1", "SMTP-Login", 2, "CRITICAL: " + "\\" * 5000, "", 1.0)
    line = command_line(result, EngineReader.NAGIOS)
    text = line[:-1].decode().split(";", 4)[4]
    assert len(line) <= PIPE_BUF and len(text) % 2 == 0  # "CRITICAL: " is 10, then pairs
    assert nagios_unescape(text) == "CRITICAL: " + "\\" * ((len(text) - 10) // 2)
