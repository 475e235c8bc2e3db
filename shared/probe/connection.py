"""One SMTP connection over asyncio streams: send a command, read a bounded reply.

Every read is bounded in size as well as in time (the caller's deadline), so a server that
sends a megabyte line or endless continuation lines is cut off with a clear protocol error
instead of filling memory. Errors are raised as `ProbeError`s tagged with the current phase.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import SupportsIndex

from smtp_checks.shared.probe.failures import FailureKind, ProbeError, ProbeFailure
from smtp_checks.shared.probe.phases import Phase
from smtp_checks.shared.sanitize import sanitize

MAX_LINE_BYTES = 8192  # RFC 5321 allows 512; real servers stay far below 8 KiB
MAX_REPLY_LINES = 100
_REPLY_LINE = re.compile(rb"([2-5][0-9][0-9])(?:([ -])(.*))?", re.DOTALL)


@dataclass(frozen=True)
class Reply:
    code: int
    lines: tuple[str, ...]  # text after code and separator; raw server text, NOT sanitised

    @property
    def text(self) -> str:
        return " ".join(line for line in self.lines if line)

    def __str__(self) -> str:
        return f"{self.code} {self.text}".rstrip()


class TimedStreamReader(asyncio.StreamReader):
    """A stream reader that notes when bytes last came in (`time.perf_counter()`).

    The event loop hands bytes to the reader as soon as it reads them from the socket; the
    coroutine waiting for them runs a turn of the loop later, after whatever else was ready.
    With a thousand sessions in flight that turn can take milliseconds, which are ours, not
    the server's: a reply's time is when its bytes arrived."""

    received_at = 0.0

    def feed_data(self, data: Iterable[SupportsIndex]) -> None:
        self.received_at = time.perf_counter()
        super().feed_data(data)


class SmtpConnection:
    """A connected SMTP session. The probe sets `phase` before each step."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        transcript: list[str] | None = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._transcript = transcript
        self.phase = Phase.BANNER
        # When the bytes that completed the last reply arrived (time.perf_counter()).
        self.reply_received_at: float | None = None

    @classmethod
    async def open(
        cls, address: str, port: int, transcript: list[str] | None = None
    ) -> SmtpConnection:
        """Connect by TCP to an already resolved address (asyncio.open_connection, with a
        reader that notes when replies arrive)."""
        loop = asyncio.get_running_loop()
        reader = TimedStreamReader(limit=MAX_LINE_BYTES, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport, _ = await loop.create_connection(lambda: protocol, address, port)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        return cls(reader, writer, transcript)

    def fail(
        self, kind: FailureKind, detail: str | bytes, reply_code: int | None = None
    ) -> ProbeError:
        return ProbeError(ProbeFailure.make(kind, self.phase, detail, reply_code))

    async def read_reply(self) -> Reply:
        """Read one (possibly multi-line) reply."""
        code: int | None = None
        lines: list[str] = []
        while True:
            raw = (await self._read_line()).rstrip(b"\r\n")
            match = _REPLY_LINE.fullmatch(raw)
            if match is None or (code is not None and int(match.group(1)) != code):
                raise self.fail(FailureKind.PROTOCOL, f"unexpected reply '{sanitize(raw, 80)}'")
            code = int(match.group(1))
            lines.append((match.group(3) or b"").decode("utf-8", errors="replace"))
            if self._transcript is not None:
                self._transcript.append("S: " + sanitize(raw, 512))
            if match.group(2) != b"-":
                self.reply_received_at = getattr(self._reader, "received_at", None)
                return Reply(code, tuple(lines))
            if len(lines) >= MAX_REPLY_LINES:
                raise self.fail(FailureKind.PROTOCOL, f"reply longer than {MAX_REPLY_LINES} lines")

    async def _read_line(self) -> bytes:
        try:
            return await self._reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            raise self.fail(
                FailureKind.PROTOCOL, f"reply line longer than {MAX_LINE_BYTES} bytes"
            ) from None
        except asyncio.IncompleteReadError:
            raise self.fail(FailureKind.NETWORK, "connection closed by the server") from None
        except ssl.SSLError as error:
            raise self.fail(FailureKind.TLS, f"TLS error: {error.reason or error}") from None
        except OSError as error:
            raise self.fail(FailureKind.NETWORK, error.strerror or str(error)) from None

    async def send(self, line: str, *, shown_as: str | None = None) -> None:
        """Send one command line. `shown_as` replaces it in the transcript (for secrets)."""
        if "\r" in line or "\n" in line:
            raise ValueError("an SMTP command cannot contain a line break")
        if self._transcript is not None:
            self._transcript.append("C: " + (line if shown_as is None else shown_as))
        await self.send_raw(line.encode("utf-8") + b"\r\n")

    async def send_raw(self, data: bytes) -> None:
        try:
            self._writer.write(data)
            await self._writer.drain()
        except ssl.SSLError as error:
            raise self.fail(FailureKind.TLS, f"TLS error: {error.reason or error}") from None
        except OSError as error:
            raise self.fail(FailureKind.NETWORK, error.strerror or str(error)) from None

    async def command(self, line: str, *, shown_as: str | None = None) -> Reply:
        await self.send(line, shown_as=shown_as)
        return await self.read_reply()

    async def start_tls(self, context: ssl.SSLContext, server_hostname: str) -> ssl.SSLObject:
        """Upgrade the connection to TLS; certificate problems are told apart from others."""
        try:
            await self._writer.start_tls(context, server_hostname=server_hostname)
        except ssl.SSLCertVerificationError as error:
            reason = error.verify_message or error.reason or str(error)
            raise self.fail(
                FailureKind.CERTIFICATE, f"certificate verify failed: {reason}"
            ) from None
        except ssl.SSLError as error:
            raise self.fail(
                FailureKind.TLS, f"TLS handshake failed: {error.reason or error}"
            ) from None
        except (OSError, EOFError) as error:
            detail = getattr(error, "strerror", None) or str(error) or "connection closed"
            raise self.fail(FailureKind.TLS, f"TLS handshake failed: {detail}") from None
        ssl_object = self._writer.get_extra_info("ssl_object")
        assert isinstance(ssl_object, ssl.SSLObject)
        return ssl_object

    def close(self, *, graceful: bool) -> None:
        """Close without waiting: a hostile peer must not hold us past the deadline."""
        if graceful:
            self._writer.close()
        else:
            self._writer.transport.abort()
