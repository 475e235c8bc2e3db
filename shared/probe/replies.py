"""SMTP replies read from bytes, without I/O: `ReplyReader` is fed what the server sent and
hands back complete replies, each stamped with when its last byte arrived.

Every read is bounded: a line longer than `MAX_LINE_BYTES` or a reply of more than
`MAX_REPLY_LINES` lines is a protocol error, so a server that sends a megabyte line or
endless continuation lines is cut off instead of filling memory.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

from smtp_checks.shared.errors import SmtpChecksError
from smtp_checks.shared.sanitize import sanitize

MAX_LINE_BYTES = 8192  # RFC 5321 allows 512; real servers stay far below 8 KiB
MAX_REPLY_LINES = 100
_REPLY_LINE = re.compile(rb"([2-5][0-9][0-9])(?:([ -])(.*))?", re.DOTALL)


@dataclass(frozen=True)
class Reply:
    code: int
    lines: tuple[str, ...]  # text after code and separator; raw server text, NOT sanitised
    received_at: float = 0.0  # when its last byte arrived (the driver's clock)

    @property
    def text(self) -> str:
        return " ".join(line for line in self.lines if line)

    def __str__(self) -> str:
        return f"{self.code} {self.text}".rstrip()


class ProtocolViolation(SmtpChecksError):
    """The server does not speak SMTP as it should; the message is safe to show."""


class ReplyReader:
    """Turns bytes into replies. `feed` may raise ProtocolViolation; after that the reader
    takes nothing more."""

    def __init__(self, transcript: list[str] | None = None) -> None:
        self._buffer = b""
        self._code: int | None = None
        self._lines: list[str] = []
        self._ready: deque[Reply] = deque()
        self._transcript = transcript
        self.broken = False

    def feed(self, data: bytes, at: float) -> None:
        """Bytes that arrived at `at`; the replies they complete become ready."""
        if self.broken:
            return
        self._buffer += data
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_LINE_BYTES:
                    self._break(f"reply line longer than {MAX_LINE_BYTES} bytes")
                return
            if end + 1 > MAX_LINE_BYTES:
                self._break(f"reply line longer than {MAX_LINE_BYTES} bytes")
            line, self._buffer = self._buffer[: end + 1], self._buffer[end + 1 :]
            self._line(line.rstrip(b"\r\n"), at)

    def next_reply(self) -> Reply | None:
        """The oldest complete reply not handed out yet, if any."""
        return self._ready.popleft() if self._ready else None

    def _line(self, raw: bytes, at: float) -> None:
        match = _REPLY_LINE.fullmatch(raw)
        if match is None or (self._code is not None and int(match.group(1)) != self._code):
            self._break(f"unexpected reply '{sanitize(raw, 80)}'")
        assert match is not None
        self._code = int(match.group(1))
        self._lines.append((match.group(3) or b"").decode("utf-8", errors="replace"))
        if self._transcript is not None:
            self._transcript.append("S: " + sanitize(raw, 512))
        if match.group(2) != b"-":
            self._ready.append(Reply(self._code, tuple(self._lines), at))
            self._code, self._lines = None, []
        elif len(self._lines) >= MAX_REPLY_LINES:
            self._break(f"reply longer than {MAX_REPLY_LINES} lines")

    def _break(self, reason: str) -> None:
        self.broken = True
        self._buffer = b""
        raise ProtocolViolation(reason)
