"""What every forwarder delivers, and the one way it may fail."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

Kind = Literal["change", "refresh"]


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

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PassiveResult:
        return cls(**data)


class ForwardError(Exception):
    """Delivery failed in a way worth retrying later (Centreon down, reader gone, 5xx,
    timeout). The batch stays in the outbox, in order."""


class Forwarder(Protocol):
    name: str

    def deliver(self, batch: list[PassiveResult]) -> None:
        """Deliver every result of `batch`, in order, or raise ForwardError.

        A result Centreon refuses for good (unknown host or service) is logged and counted,
        not retried: retrying would block every later result behind it."""
        ...

    def close(self) -> None: ...
