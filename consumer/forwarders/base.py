"""What every forwarder delivers, how it reports progress, and the ways it may fail."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

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
class PassiveResult:
    """One service state for Centreon. `output` is the plugin's first line as rendered
    (`OK: Response time 0.005 second(s)`) and `perfdata` what followed the `|`, both already
    sanitised; `check_time` is epoch seconds."""

    host: str
    service: str
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
        return cls(**data)


class ForwardError(Exception):
    """Delivery failed in a way worth retrying later (Centreon down, reader gone, 5xx,
    timeout). What was not settled stays in the outbox, in order."""


class CentreonRightsError(ForwardError):
    """Centreon knows who we are but refuses what we ask: logging in again cannot help, an
    administrator must grant a right. Retried with backoff (the right may be granted)."""


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
