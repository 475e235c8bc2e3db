"""One performance data item, printed as Centreon prints it: `'label'=value[unit];w;c;min;max`."""

from __future__ import annotations

from dataclasses import dataclass

from smtp_checks.shared.output.ranges import Range, perl_number_text

__all__ = ["Perfdata"]


@dataclass(frozen=True)
class Perfdata:
    """A metric with its thresholds and bounds.

    `precision` fixes the number of decimals of the printed value (the SMTP modes print
    `time` with `sprintf('%.3f')`); None prints it as Perl prints a number (`%.15g`).
    """

    label: str
    value: float
    unit: str = ""
    warning: Range | None = None
    critical: Range | None = None
    min: float | None = None
    max: float | None = None
    precision: int | None = None

    @property
    def quoted_label(self) -> str:
        """The label with `'` doubled, as Centreon stores it for every output format."""
        return self.label.replace("'", "''")

    @property
    def value_text(self) -> str:
        if self.precision is None:
            return perl_number_text(self.value)
        return f"{self.value:.{self.precision}f}"

    @property
    def min_text(self) -> str:
        return "" if self.min is None else perl_number_text(self.min)

    @property
    def max_text(self) -> str:
        return "" if self.max is None else perl_number_text(self.max)

    def warning_text(self, range_perfdata: int = 0) -> str:
        return "" if self.warning is None else self.warning.perfdata_text(range_perfdata)

    def critical_text(self, range_perfdata: int = 0) -> str:
        return "" if self.critical is None else self.critical.perfdata_text(range_perfdata)

    def render(self, range_perfdata: int = 0) -> str:
        """`'time'=0.005s;;;;` or `'time'=1.234s;0:1;0:2;;`: always four `;`."""
        return (
            f"'{self.quoted_label}'={self.value_text}{self.unit};"
            f"{self.warning_text(range_perfdata)};{self.critical_text(range_perfdata)};"
            f"{self.min_text};{self.max_text}"
        )
