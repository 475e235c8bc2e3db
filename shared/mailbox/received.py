"""The dates in a message's headers: its `Received:` headers, oldest first (each mail server
it passed through adds one on top, ending with the date it received the message, RFC 5321
4.4), and its `Date:`."""

from __future__ import annotations

import itertools
from email.parser import BytesHeaderParser
from email.utils import parsedate_to_datetime


def received_dates(header_block: bytes) -> tuple[float, ...]:
    """Epoch seconds of each readable `Received:` header of `header_block`, oldest first."""
    headers = BytesHeaderParser().parsebytes(header_block)
    dates: list[float] = []
    for value in headers.get_all("Received", []):
        _, _, date = str(value).rpartition(";")
        try:
            dates.append(parsedate_to_datetime(" ".join(date.split())).timestamp())
        except (TypeError, ValueError, IndexError):
            continue  # a header without a readable date: no hop from it
    return tuple(reversed(dates))


def header_date(value: object) -> float | None:
    """Epoch seconds of a `Date:` header's value; None when unreadable (never a leftover)."""
    try:
        return parsedate_to_datetime(" ".join(str(value).split())).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def hops(dates: tuple[float, ...]) -> tuple[float, ...]:
    """Seconds between successive `Received:` dates (never negative: clocks differ)."""
    return tuple(max(0.0, later - earlier) for earlier, later in itertools.pairwise(dates))
