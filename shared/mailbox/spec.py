"""What a look into a mailbox is asked to find, and what it found."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from smtp_checks.shared.probe.failures import FailureKind
from smtp_checks.shared.probe.spec import TlsMode, TlsSettings
from smtp_checks.shared.sanitize import sanitize


class ReceiveProtocol(StrEnum):
    IMAP = "imap"
    POP3 = "pop3"

    def default_port(self, tls: TlsMode) -> int:
        implicit = tls is TlsMode.IMPLICIT
        if self is ReceiveProtocol.IMAP:
            return 993 if implicit else 143
        return 995 if implicit else 110


@dataclass(frozen=True)
class MailboxSpec:
    """Where to look: the server, its TLS, the account and the folders. `junk` folders are
    searched after `mailbox`: found there, the message was delivered to Junk."""

    protocol: ReceiveProtocol
    host: str
    port: int
    username: str
    password: str = field(repr=False)
    tls: TlsSettings = field(default_factory=TlsSettings)
    timeout: float = 30.0  # seconds for one look, from connect to logout
    mailbox: str = "INBOX"
    junk: tuple[str, ...] = ()


LEFTOVER_MARGIN = 120.0  # seconds beyond a round trip's course before its message is a leftover


def leftover_age(receive_timeout: float, timeout: float) -> float:
    """Seconds after which a round trip's message is a leftover: its whole course (the
    send, the receive timeout, the last look), with a margin, is over."""
    return receive_timeout + timeout + LEFTOVER_MARGIN


@dataclass(frozen=True)
class Wanted:
    """The message of this run (its token) and the check it belongs to. A message of the
    same check with another token, dated more than `leftover_age` seconds ago, was left by
    an earlier run (its look never came, or never found it) and is deleted; a younger one
    may be another run's still in progress (a run by hand beside the scheduled one), and is
    left alone."""

    token: str
    check_tag: str
    leftover_age: float = 600.0


# What a session found in one folder: when the message was seen (None: not there), the
# dates of its `Received:` headers, and how many leftovers of earlier runs it deleted.
Found = tuple[float | None, tuple[float, ...], int]


@dataclass(frozen=True)
class MailboxFailure:
    """Why a look could not be made. `detail` is sanitised: safe to show anywhere."""

    kind: FailureKind
    detail: str

    @classmethod
    def make(cls, kind: FailureKind, detail: str | bytes) -> MailboxFailure:
        return cls(kind, sanitize(detail))


@dataclass(frozen=True)
class MailboxLook:
    """One look: where the message was found (None: not there yet), when (epoch seconds),
    the dates of its `Received:` headers (oldest first), and how many leftovers of earlier
    runs were deleted; or why the look failed."""

    time: float  # seconds the look took
    found_in: str | None = None
    seen_at: float | None = None
    received: tuple[float, ...] = ()
    cleaned: int = 0
    failure: MailboxFailure | None = None

    @property
    def found(self) -> bool:
        return self.found_in is not None
