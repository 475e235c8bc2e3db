"""Nagios ranges as Centreon parses, evaluates and prints them."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtp_checks.shared.output.ranges import Range, perl_number_text


@pytest.mark.parametrize(
    ("text", "start", "end", "inside", "printed"),
    [
        ("10", 0.0, 10.0, False, "0:10"),
        ("10:", 10.0, math.inf, False, "10:"),
        ("~:10", -math.inf, 10.0, False, "~:10"),
        ("10:20", 10.0, 20.0, False, "10:20"),
        ("@10:20", 10.0, 20.0, True, "@10:20"),
        ("1", 0.0, 1.0, False, "0:1"),
        ("0", 0.0, 0.0, False, "0:0"),
        ("0.001", 0.0, 0.001, False, "0:0.001"),
        (":10", 0.0, 10.0, False, "0:10"),
        ("+10", 0.0, 10.0, False, "0:10"),
        ("+1:+5", 1.0, 5.0, False, "1:5"),
        ("-5:-1", -5.0, -1.0, False, "-5:-1"),
        ("1,5", 0.0, 1.5, False, "0:1.5"),
        ("1.50", 0.0, 1.5, False, "0:1.50"),
        ("007", 0.0, 7.0, False, "0:007"),
        ("10KB", 0.0, 10240.0, False, "0:10240"),
        ("2Mb", 0.0, 2_000_000.0, False, "0:2000000"),
        ("1.5KB:2KB", 1536.0, 2048.0, False, "1536:2048"),
        ("~:", -math.inf, math.inf, False, "~:"),
        ("@", 0.0, math.inf, True, "@0:"),
        ("@~:0", -math.inf, 0.0, True, "@~:0"),
        ("  5\t", 0.0, 5.0, False, "0:5"),
        ("5\x00", 0.0, 5.0, False, "0:5"),
        ("", 0.0, math.inf, False, "0:"),
        (" ", 0.0, math.inf, False, "0:"),
    ],
)
def test_parse_as_centreon(text: str, start: float, end: float, inside: bool, printed: str) -> None:
    parsed = Range.parse(text)
    assert (parsed.start, parsed.end, parsed.inside) == (start, end, inside)
    assert parsed.perfdata_text(0) == printed
    assert str(parsed) == printed


@pytest.mark.parametrize(
    "text",
    [
        "abc",
        "10:20:30",
        "1e5",
        "10..20",
        "@@1",
        "~10",
        "1:~",
        "10%",
        "1.",
        ".5",
        "--1",
        "1K",
        "1kb",
        "1 :2",
        "0x10",
    ],
)
def test_parse_rejects_what_centreon_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid threshold range"):
        Range.parse(text)


@pytest.mark.parametrize(
    ("text", "value", "alerts"),
    [
        # `10`: outside 0..10
        ("10", -0.001, True),
        ("10", 0.0, False),
        ("10", 10.0, False),
        ("10", 10.001, True),
        # `10:`: outside 10..inf
        ("10:", 9.999, True),
        ("10:", 10.0, False),
        ("10:", 1e12, False),
        # `~:10`: outside -inf..10
        ("~:10", -1e12, False),
        ("~:10", 10.0, False),
        ("~:10", 10.5, True),
        # `10:20`: outside 10..20
        ("10:20", 9.0, True),
        ("10:20", 15.0, False),
        ("10:20", 21.0, True),
        # `@10:20`: inside 10..20, bounds included
        ("@10:20", 9.0, False),
        ("@10:20", 10.0, True),
        ("@10:20", 15.0, True),
        ("@10:20", 20.0, True),
        ("@10:20", 20.5, False),
        ("~:", -1e300, False),
        ("0", 0.002, True),
        ("0.001", 0.089, True),
    ],
)
def test_alerts(text: str, value: float, alerts: bool) -> None:
    assert Range.parse(text).alerts(value) is alerts


def test_value_is_rounded_to_float_precision_before_comparing() -> None:
    threshold = Range.parse("0.001")
    assert threshold.alerts(0.00100000001) is False  # 0.00100000 at 8 decimals
    assert threshold.alerts(0.00100000001, float_precision=12) is True
    assert Range.parse("2").alerts(2.000000001) is False
    assert Range.parse("2").alerts(2.00000002) is True


def test_decimal_bounds_are_rounded_too() -> None:
    threshold = Range.parse("0.123456789")  # compared as 0.12345679
    assert threshold.alerts(0.1234567895) is False
    assert threshold.alerts(0.1234567895, float_precision=10) is True


def test_only_numbers_printed_with_a_decimal_point_are_rounded() -> None:
    # Perl prints 4e-05 without a dot, so Centreon compares it unrounded even at precision 0.
    assert Range.parse("0").alerts(4e-05, float_precision=0) is True
    assert Range.parse("0").alerts(0.4, float_precision=0) is False


@pytest.mark.parametrize(
    ("text", "mode", "printed"),
    [
        ("1", 0, "0:1"),
        ("1", 1, "1"),
        ("1", 2, ""),
        ("0.001", 1, "0.001"),
        ("@0:5", 1, "@5"),
        ("0.0:5", 1, "5"),
        ("-0:5", 1, "5"),
        ("00:5", 1, "5"),
        (" ", 1, ""),
        ("10:20", 1, "10:20"),
        ("0.5:1", 1, "0.5:1"),
        ("~:5", 1, "~:5"),
        ("-1:5", 1, "-1:5"),
        ("@10:20", 2, ""),
    ],
)
def test_perfdata_text_under_range_perfdata(text: str, mode: int, printed: str) -> None:
    assert Range.parse(text).perfdata_text(mode) == printed


def test_perfdata_text_rejects_other_modes_with_the_plugin_message() -> None:
    with pytest.raises(ValueError, match=r"^Wrong range-perfdata option '3'$"):
        Range.parse("1").perfdata_text(3)


def test_ranges_built_from_numbers_print_like_perl() -> None:
    assert Range(start=1.5, end=2.0).perfdata_text() == "1.5:2"
    assert Range().perfdata_text() == "0:"
    assert Range(start=-math.inf, end=10.0).perfdata_text() == "~:10"
    assert Range(end=2.0, inside=True).perfdata_text() == "@0:2"
    assert Range(start=1.5, end=2.0).alerts(1.4) is True


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"),
        (-0.0, "0"),
        (10.0, "10"),
        (0.3, "0.3"),
        (0.1 * 3, "0.3"),
        (1 / 3, "0.333333333333333"),
        (4e-05, "4e-05"),
        (1e20, "1e+20"),
        (math.inf, "Inf"),
        (-math.inf, "-Inf"),
        (math.nan, "NaN"),
    ],
)
def test_perl_number_text(value: float, text: str) -> None:
    assert perl_number_text(value) == text


# --------------------------------------------------------------------------- properties

_numbers = st.decimals(
    min_value=-1000, max_value=1000, places=3, allow_nan=False, allow_infinity=False
)


@st.composite
def _range_specs(draw: st.DrawFn) -> tuple[str, bool, Decimal | None, Decimal | None, bool]:
    """A valid range text with its parts: inside, lower bound (None = ~), upper bound (None = open)."""
    inside = draw(st.booleans())
    start_kind = draw(st.sampled_from(["omitted", "empty", "tilde", "number"]))
    end = draw(st.one_of(st.none(), _numbers))
    if start_kind == "omitted" and end is None:
        end = draw(_numbers)  # a lone `@` (or nothing) is legal but tested above
    start: Decimal | None = Decimal(0)
    start_text = ""
    if start_kind == "empty":
        start_text = ":"
    elif start_kind == "tilde":
        start, start_text = None, "~:"
    elif start_kind == "number":
        start = draw(_numbers)
        start_text = f"{start}:"
    use_comma = draw(st.booleans())
    end_text = "" if end is None else str(end)
    text = ("@" if inside else "") + start_text + end_text
    if use_comma:
        text = text.replace(".", ",")
    return text, inside, start, end, start_kind == "omitted"


@given(_range_specs(), _numbers)
def test_parsed_ranges_agree_with_a_reference_predicate(
    spec: tuple[str, bool, Decimal | None, Decimal | None, bool], value: Decimal
) -> None:
    text, inside, start, end, _ = spec
    low = -math.inf if start is None else float(start)
    high = math.inf if end is None else float(end)
    v = float(value)
    expected = (low <= v <= high) if inside else (v < low or v > high)
    assert Range.parse(text).alerts(v) is expected


@given(_range_specs())
def test_printed_ranges_parse_back_to_the_same_range(
    spec: tuple[str, bool, Decimal | None, Decimal | None, bool],
) -> None:
    parsed = Range.parse(spec[0])
    printed = parsed.perfdata_text(0)
    assert Range.parse(printed) == parsed
    assert printed.startswith("@") is spec[1]
    assert printed.count(":") == 1


@given(_range_specs(), st.sampled_from([0, 1, 2]))
def test_range_perfdata_only_ever_shortens_the_text(
    spec: tuple[str, bool, Decimal | None, Decimal | None, bool], mode: int
) -> None:
    full = Range.parse(spec[0]).perfdata_text(0)
    shown = Range.parse(spec[0]).perfdata_text(mode)
    if mode == 2:
        assert shown == ""
    else:
        assert full.endswith(shown.removeprefix("@"))
