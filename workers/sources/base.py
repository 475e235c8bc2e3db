"""What every queue source gives the worker core, and what the core asks of it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, kw_only=True)
class TakenMessage:
    """One message taken off a check queue. `request` is what the check runner validates;
    `refusal` says why the message must not run at all (not JSON, not ours)."""

    request: object
    redelivered: bool = False
    refusal: str | None = None


class QueueSource(Protocol):
    """A site's check queue, seen from the worker's event loop."""

    name: str
    # Whether taking fewer messages than asked for means the queue itself was empty (so
    # every message published before was taken): true of Redis, where one script reads the
    # list; not of AMQP, where the worker reads a prefetch buffer the broker fills.
    sees_empty_queue: bool

    async def exchange(self, done: Sequence[TakenMessage], room: int) -> list[TakenMessage]:
        """Settle (acknowledge) `done`, then take up to `room` new messages, oldest first.
        Raises one of REDIS_DOWN when the broker cannot be reached (the core retries)."""
        ...

    async def depth(self) -> int | None:
        """How many messages wait on the queue, or None when the source cannot tell."""
        ...

    async def give_back(self, messages: Sequence[TakenMessage]) -> None:
        """Put messages that were not run back on the queue, unchanged, for another worker."""
        ...

    def housekeeping(self) -> None:
        """Work the source does beside the loop, in a thread of its own, until `close`."""
        ...

    def close(self) -> None: ...
