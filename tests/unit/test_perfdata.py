"""Perfdata items printed exactly as the plugin prints them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtp_checks.shared.output.perfdata import Perfdata
from smtp_checks.shared.output.ranges import Range
from smtp_checks.shared.output.thresholds import Thresholds


def _time(value: float, warning: str | None = None, critical: str | None = None) -> Perfdata:
    thresholds = Thresholds.parse(warning, critical)
    return Perfdata("time", value, "s", thresholds.warning, thresholds.critical, precision=3)


@pytest.mark.parametrize(
    ("perfdata", "expected"),
    [
        (_time(0.005), "'time'=0.005s;;;;"),
        (_time(0.091), "'time'=0.091s;;;;"),
        (_time(0.046), "'time'=0.046s;;;;"),
        (_time(1.234, "1", "2"), "'time'=1.234s;0:1;0:2;;"),
        (_time(0.002, "0"), "'time'=0.002s;0:0;;;"),
        (_time(0.002, "0", "5"), "'time'=0.002s;0:0;0:5;;"),
        (_time(0.089, "0.001"), "'time'=0.089s;0:0.001;;;"),
        (_time(0.088, "1", "2"), "'time'=0.088s;0:1;0:2;;"),
        (_time(0.0025), "'time'=0.003s;;;;"),
        (_time(12.0, "~:10", "@20:30"), "'time'=12.000s;~:10;@20:30;;"),
    ],
)
def test_render(perfdata: Perfdata, expected: str) -> None:
    assert perfdata.render() == expected


def test_min_and_max_print_as_perl_numbers() -> None:
    # The example of centreon-plugins' --explode-perfdata-max documentation.
    used = Perfdata(
        "used_prct",
        26.93,
        "%",
        Range.parse("0:80"),
        Range.parse("0:90"),
        min=0.0,
        max=100.0,
    )
    assert used.render() == "'used_prct'=26.93%;0:80;0:90;0;100"


@pytest.mark.parametrize(
    ("value", "precision", "text"),
    [
        (0.005, 3, "0.005"),
        (1.5, None, "1.5"),
        (2.0, None, "2"),
        (1e20, None, "1e+20"),
        (3.0, 0, "3"),
    ],
)
def test_value_text(value: float, precision: int | None, text: str) -> None:
    assert Perfdata("x", value, precision=precision).value_text == text


def test_label_is_single_quoted_with_quotes_doubled() -> None:
    assert Perfdata("it's", 1.0).render() == "'it''s'=1;;;;"
    assert Perfdata("it's", 1.0).quoted_label == "it''s"


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (0, "'time'=1.234s;0:1;0:2;;"),
        (1, "'time'=1.234s;1;2;;"),
        (2, "'time'=1.234s;;;;"),
    ],
)
def test_range_perfdata(mode: int, expected: str) -> None:
    assert _time(1.234, "1", "2").render(mode) == expected


_labels = st.text(min_size=1, max_size=20)
_units = st.text(
    alphabet=st.characters(blacklist_characters=";", blacklist_categories=["Cs"]), max_size=4
)
_ranges = st.one_of(
    st.none(),
    st.sampled_from(["1", "0:5", "~:3", "@1:2", "10:", "0.5"]).map(Range.parse),
)


@given(
    _labels,
    st.floats(allow_nan=False, allow_infinity=False),
    _units,
    _ranges,
    _ranges,
    st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
    st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
    st.one_of(st.none(), st.integers(0, 6)),
    st.sampled_from([0, 1, 2]),
)
def test_rendered_perfdata_shape(
    label: str,
    value: float,
    unit: str,
    warning: Range | None,
    critical: Range | None,
    minimum: float | None,
    maximum: float | None,
    precision: int | None,
    mode: int,
) -> None:
    perf = Perfdata(label, value, unit, warning, critical, minimum, maximum, precision)
    rendered = perf.render(mode)
    prefix = "'" + label.replace("'", "''") + "'="
    assert rendered.startswith(prefix)
    rest = rendered[len(prefix) :]
    assert rest.count(";") == 4
    assert rest.startswith(perf.value_text + unit + ";")
