"""The warning/critical pair of a check and how it judges a measured value."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from smtp_checks.shared.errors import ThresholdError
from smtp_checks.shared.output.ranges import Range
from smtp_checks.shared.output.status import Status

__all__ = ["ThresholdError", "Thresholds"]


def _parse_one(label: str, text: str | None) -> Range | None:
    # Only an absent or empty option means "no threshold"; blank text is the range `0:`.
    if text is None or text == "":
        return None
    try:
        return Range.parse(text)
    except ValueError:
        raise ThresholdError(label, text) from None


@functools.lru_cache(maxsize=1024)
def _parsed(warning: str | None, critical: str | None) -> Thresholds:
    return Thresholds(_parse_one("warning", warning), _parse_one("critical", critical))


@dataclass(frozen=True)
class Thresholds:
    """Optional warning and critical ranges."""

    warning: Range | None = None
    critical: Range | None = None

    @classmethod
    def parse(cls, warning: str | None, critical: str | None) -> Thresholds:
        """Parse `--warning` then `--critical` (the plugin reports the warning error first).
        Parsed once per pair of texts: a consumer renders thousands of results a second with
        the few thresholds of its config."""
        return _parsed(warning, critical)

    def evaluate(self, value: float, float_precision: int = 8) -> Status:
        """CRITICAL if the critical range alerts, else WARNING if the warning one does, else OK."""
        if self.critical is not None and self.critical.alerts(value, float_precision):
            return Status.CRITICAL
        if self.warning is not None and self.warning.alerts(value, float_precision):
            return Status.WARNING
        return Status.OK
