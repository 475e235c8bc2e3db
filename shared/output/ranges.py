"""Nagios threshold ranges as Centreon parses, evaluates and prints them.

Syntax (centreon::plugins::misc::parse_threshold): `[@][start:][end]` where start is `~`
(minus infinity), a number or nothing (0), and end is a number or nothing (plus infinity).
Numbers may carry a sign, a decimal comma or dot, and a byte/bit multiplier (`10KB`, `2Mb`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cache

__all__ = ["Range", "perl_number_text"]

_BYTE_EXPONENTS = {"K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}


@cache
def _syntax() -> re.Pattern[str]:
    # Compiled on first use so that importing this module stays cheap.
    number = r"[+-]?\d+(?:[.,]\d+)?(?:[KMGTPE][bB])?"
    return re.compile(rf"(@?)((?:~|{number}|):)?({number})?", re.ASCII)


def perl_number_text(value: float) -> str:
    """A number as Perl stringifies it (`%.15g`, `Inf`, `-Inf`, `NaN`, never `-0`)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    return format(value, ".15g")


def _perl_numify(text: str) -> float:
    """Perl's numeric value of a string that starts with a number (`1,5` is 1)."""
    match = re.match(r"[+-]?\d+(?:\.\d+)?", text)
    return float(match.group()) if match else 0.0


def _bound_text(raw: str) -> str:
    """Apply the byte/bit multiplier of a bound, which Centreon resolves at parse time."""
    if len(raw) >= 2 and raw[-2] in _BYTE_EXPONENTS and raw[-1] in "bB":
        base = 1000 if raw[-1] == "b" else 1024
        scaled = _perl_numify(raw[:-2]) * float(base) ** _BYTE_EXPONENTS[raw[-2]]
        return perl_number_text(scaled)
    return raw


def _trim(text: str) -> str:
    # misc::trim: drop one trailing NUL, then spaces, tabs and newlines at both ends.
    text = re.sub(r"\x00(?=\n?\Z)", "", text, count=1)
    return text.strip(" \t\n")


def _at_precision(value: float, text: str, float_precision: int) -> float:
    # Centreon rounds (sprintf "%.Nf") only numbers whose text shows a decimal separator.
    if "." in text or "," in text:
        return float(f"{value:.{float_precision}f}")
    return value


@dataclass(frozen=True)
class Range:
    """A threshold range. Alerts when the value is outside [start, end], or inside with `@`.

    `start_text` / `end_text` keep the bounds as the user wrote them (after Centreon's
    normalisation: `+` dropped, `,` turned into `.`), because that is what perfdata shows
    (`1.50` stays `1.50`). Left as None they are derived from the numbers.
    """

    start: float = 0.0
    end: float = math.inf
    inside: bool = False
    start_text: str | None = None
    end_text: str | None = None

    @classmethod
    def parse(cls, text: str) -> Range:
        """Parse Nagios range syntax the way Centreon does; ValueError when it does not match.

        An empty (or blank) text is valid for Centreon and means `0:` (alert below 0); an
        absent threshold is handled by `Thresholds`, not here.
        """
        match = _syntax().fullmatch(_trim(text))
        if match is None:
            raise ValueError(f"invalid threshold range {text!r}")
        at, start_part, end_part = match.groups()
        start_raw = _bound_text((start_part or "").replace("+", "").replace(":", ""))
        end_raw = _bound_text((end_part or "").replace("+", "", 1))

        if end_raw == "":
            end, end_text = math.inf, ""
        else:
            end_text = end_raw.replace(",", ".", 1)
            end = float(end_text)
        if start_raw == "~":
            start, start_text = -math.inf, "~"
        else:
            start_text = start_raw.replace(",", ".", 1) if start_raw else "0"
            start = float(start_text)
        return cls(start, end, at == "@", start_text, end_text)

    @property
    def _start_shown(self) -> str:
        if self.start == -math.inf:
            return "~"
        return self.start_text if self.start_text is not None else perl_number_text(self.start)

    @property
    def _end_shown(self) -> str:
        if self.end == math.inf:
            return ""
        return self.end_text if self.end_text is not None else perl_number_text(self.end)

    def alerts(self, value: float, float_precision: int = 8) -> bool:
        """Whether `value` breaches this range, compared as centreon::plugins::perfdata does:
        the value and any decimal bound are first rounded to `float_precision` decimals."""
        value = _at_precision(value, perl_number_text(value), float_precision)
        start = _at_precision(self.start, self._start_shown, float_precision)
        end = _at_precision(self.end, self._end_shown, float_precision)
        if self.inside:
            return start <= value <= end
        return value < start or value > end

    def perfdata_text(self, range_perfdata: int = 0) -> str:
        """The range as it appears in perfdata under `--range-perfdata` 0, 1 or 2.

        0: `[@]start:end` (`~` for minus infinity, nothing for plus infinity: `1` is `0:1`);
        1: a lower bound made only of zeros and dots (optionally negative) is dropped
        (`0:1` is `1`, `@0:5` is `@5`); 2: nothing.
        """
        if range_perfdata not in (0, 1, 2):
            raise ValueError(f"Wrong range-perfdata option '{range_perfdata}'")
        if range_perfdata == 2:
            return ""
        at = "@" if self.inside else ""
        start = self._start_shown
        if range_perfdata == 1:
            digits = start.removeprefix("-")
            if digits and set(digits) <= {"0", "."}:
                return f"{at}{self._end_shown}"
        return f"{at}{start}:{self._end_shown}"

    def __str__(self) -> str:
        return self.perfdata_text(0)
