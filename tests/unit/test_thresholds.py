"""Warning/critical thresholds: the plugin's validation messages and its evaluation order."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtp_checks.shared.output.ranges import Range
from smtp_checks.shared.output.status import Status
from smtp_checks.shared.output.thresholds import ThresholdError, Thresholds


def test_absent_or_empty_thresholds_mean_no_threshold() -> None:
    assert Thresholds.parse(None, None) == Thresholds(None, None)
    assert Thresholds.parse("", "") == Thresholds(None, None)
    assert Thresholds.parse("", "").evaluate(1e9) is Status.OK


def test_blank_threshold_is_the_range_zero_to_infinity() -> None:
    # The plugin only skips '' itself; ' ' trims to the empty range `0:`.
    thresholds = Thresholds.parse(" ", None)
    assert thresholds.warning == Range.parse("0:")
    assert thresholds.evaluate(-1.0) is Status.WARNING
    assert thresholds.evaluate(5.0) is Status.OK


@pytest.mark.parametrize(
    ("warning", "critical", "message"),
    [
        ("abc", None, "Wrong warning threshold 'abc'."),
        (None, "abc", "Wrong critical threshold 'abc'."),
        ("abc", "def", "Wrong warning threshold 'abc'."),
        ("1", "x:y", "Wrong critical threshold 'x:y'."),
        (" 1x ", None, "Wrong warning threshold ' 1x '."),
        ("10%", None, "Wrong warning threshold '10%'."),
    ],
)
def test_invalid_thresholds_carry_the_plugin_message(
    warning: str | None, critical: str | None, message: str
) -> None:
    with pytest.raises(ThresholdError) as caught:
        Thresholds.parse(warning, critical)
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)


def test_threshold_error_names_the_option_and_text() -> None:
    with pytest.raises(ThresholdError) as caught:
        Thresholds.parse(None, "oops")
    assert (caught.value.label, caught.value.text) == ("critical", "oops")


@pytest.mark.parametrize(
    ("warning", "critical", "value", "status"),
    [
        ("1", "2", 0.5, Status.OK),
        ("1", "2", 1.234, Status.WARNING),
        ("1", "2", 2.5, Status.CRITICAL),
        ("0", None, 0.002, Status.WARNING),
        ("0", "5", 0.002, Status.WARNING),
        ("0.001", None, 0.089, Status.WARNING),
        (None, "0.001", 0.089, Status.CRITICAL),
        # Critical is evaluated first: both alert, critical wins.
        ("@0:10", "5", 7.0, Status.CRITICAL),
        ("5", "@0:10", 7.0, Status.CRITICAL),
        ("@0:10", "5", 3.0, Status.WARNING),
        ("10:", "~:20", 30.0, Status.CRITICAL),
        ("10:", "~:20", 5.0, Status.WARNING),
    ],
)
def test_evaluate(warning: str | None, critical: str | None, value: float, status: Status) -> None:
    assert Thresholds.parse(warning, critical).evaluate(value) is status


def test_evaluate_passes_float_precision_on() -> None:
    thresholds = Thresholds.parse("0.001", None)
    assert thresholds.evaluate(0.00100000001) is Status.OK
    assert thresholds.evaluate(0.00100000001, float_precision=12) is Status.WARNING


_bounds = st.integers(min_value=-50, max_value=50).map(str)


@given(st.one_of(st.none(), _bounds), st.one_of(st.none(), _bounds), st.floats(-100, 100))
def test_evaluate_is_critical_then_warning_then_ok(
    warning: str | None, critical: str | None, value: float
) -> None:
    thresholds = Thresholds.parse(warning, critical)
    result = thresholds.evaluate(value)
    crit = thresholds.critical is not None and thresholds.critical.alerts(value)
    warn = thresholds.warning is not None and thresholds.warning.alerts(value)
    expected = Status.CRITICAL if crit else Status.WARNING if warn else Status.OK
    assert result is expected
