"""A round trip's verdict on delivery, as the report words it: found (where, how fast, to
within what), not found within the receive timeout, or unknown (the mailbox could not be
read). Built by whoever joined the send and the receive sides: the consumer, or the CLI."""

from __future__ import annotations

from dataclasses import dataclass, replace

from smtp_checks.shared.mailbox.received import hops

FIRST_LOOK_DELAY = 1.0  # seconds from the end of the send step to the first look
MAX_LOOK_DELAY = 30.0


def next_look_delay(looks: int) -> float:
    """Seconds before the next look after `looks` that found nothing: 2, 4, 8, 16, 30, 30..."""
    return min(MAX_LOOK_DELAY, 2.0 ** max(1, looks))


def next_look_at(after: float, looks: int, not_after: float) -> float:
    """When the next look is due, `after` the `looks` that found nothing, never past the
    end of the receive timeout (`not_after`): the last look is made at its end."""
    return min(after + next_look_delay(looks), not_after)


@dataclass(frozen=True)
class Delivery:
    token: str  # the run's, in the message's header and subject
    sent_at: float  # epoch seconds: the server accepted the message (end of DATA)
    timeout: float  # seconds the receive side looked for it
    folder: str | None = None  # where it was found; None: not found (or not known)
    junk: bool = False  # found in one of the configured junk folders
    seconds: float | None = None  # from the end of DATA to the look that found it
    # Seconds between the look that found it and the one before: the delivery happened in
    # that window, so `seconds` is at most this much too long.
    bound: float | None = None
    received: tuple[float, ...] = ()  # the message's `Received:` dates, oldest first
    failure: str | None = None  # the mailbox could not be read: the delivery is not known
    warning: str | None = None  # thresholds on `seconds`
    critical: str | None = None

    @property
    def hops(self) -> tuple[float, ...]:
        return hops(self.received)

    def found(
        self,
        folder: str,
        seen_at: float,
        *,
        junk: bool,
        last_look_at: float | None,
        received: tuple[float, ...] = (),
    ) -> Delivery:
        """Found in `folder` by the look at `seen_at`; the look before it (at
        `last_look_at`, None: there was none) had not found it."""
        return replace(
            self,
            folder=folder,
            junk=junk,
            seconds=max(0.0, seen_at - self.sent_at),
            bound=max(0.0, seen_at - (last_look_at or self.sent_at)),
            received=received,
        )

    @property
    def deadline(self) -> float:
        """The end of the receive timeout (epoch seconds)."""
        return self.sent_at + self.timeout

    def after_look(
        self,
        found_in: str | None,
        seen_at: float | None,
        *,
        ended_at: float,
        junk: tuple[str, ...],
        last_look_at: float | None,
        received: tuple[float, ...] = (),
    ) -> Delivery | None:
        """The verdict of a look that ended at `ended_at` and found the message in
        `found_in` (None: not there); None while there is time to look again. The same for
        the CLI and the pipeline: the same looks give the same verdict."""
        if found_in is not None and seen_at is not None:
            return self.found(
                found_in, seen_at, junk=found_in in junk, last_look_at=last_look_at,
                received=received,
            )  # fmt: skip
        return None if ended_at < self.deadline else self

    def unknown(self, why: str) -> Delivery:
        """The mailbox could not be read: the delivery is not known."""
        return replace(self, failure=why)
