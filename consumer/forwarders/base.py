"""What every forwarder delivers, how it reports progress, and the ways it may fail."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

from smtp_checks.shared.errors import CentreonRightsError, ForwardError
from smtp_checks.shared.identity import CheckIdentity, Identified
from smtp_checks.shared.probe.spec import Mode

__all__ = [
    "CentreonRightsError",
    "ForwardError",
    "Forwarder",
    "PassiveResult",
    "Settled",
    "ignore_settled",
]

Kind = Literal["change", "refresh"]

# One perfdata item: a label (quoted, `'` doubled inside, or bare) and what follows `=`.
_PERFDATA_ITEM = re.compile(r"(?:'(?:[^']|'')*'|[^\s=']+)=\S*")

Settled = Callable[[Sequence[int]], None]
"""Called by a forwarder with the positions (in the batch it was given) of results that are
done: delivered, or dropped for good. The outbox forgets them at once, so that a failure or
a crash later in the batch never sends them again."""


def ignore_settled(positions: Sequence[int]) -> None:
    """For callers that keep no outbox (tests, one-off deliveries)."""


@dataclass(frozen=True)
class PassiveResult(Identified):
    """One service state for Centreon, of the run `identity` (its host and service are the
    Centreon names). `output` is the plugin's first line as rendered (`OK: Response time
    0.005 second(s)`) and `perfdata` what follows its `|`, both already sanitised, carried
    apart until a forwarder joins them; `check_time` is epoch seconds."""

    identity: CheckIdentity
    status: int  # 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
    output: str
    perfdata: str
    check_time: float
    kind: Kind = "change"  # a state change, or a periodic refresh of an unchanged state

    @property
    def plugin_output(self) -> str:
        """Output and perfdata as one plugin line, the form the command file takes: the
        same bytes `smtp-checks check` prints."""
        return f"{self.output} | {self.perfdata}" if self.perfdata else self.output

    @property
    def perfdata_items(self) -> list[str]:
        """The perfdata, item by item (`'time'=0.005s;;;;`), for cutting a line at a whole
        item."""
        return _PERFDATA_ITEM.findall(self.perfdata)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PassiveResult:
        identity = data["identity"]
        mode = Mode(identity["mode"])
        return cls(**{**data, "identity": CheckIdentity(**{**identity, "mode": mode})})


class Forwarder(Protocol):
    name: str

    def deliver(self, batch: list[PassiveResult], settled: Settled = ignore_settled) -> None:
        """Deliver every result of `batch`, in order, calling `settled` as results are done,
        or raise ForwardError for the ones not settled yet.

        A result Centreon refuses for good (unknown host or service, invalid) is logged,
        counted and settled, not retried: retrying would block every later result behind it."""
        ...

    def counters(self) -> dict[str, int]:
        """What it did since it started (delivered, dropped_unknown, ...), for logs and
        metrics."""
        ...

    def close(self) -> None: ...
