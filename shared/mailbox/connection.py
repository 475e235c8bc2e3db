"""A line-oriented client connection for the mailbox protocols (IMAP, POP3): asyncio
streams, TLS from the start or upgraded later (STARTTLS, STLS), certificates verified as
everywhere (shared/probe/tls.py), lines bounded. Errors become `MailboxError`s with a
probe failure kind; the caller's deadline (asyncio.timeout) bounds everything."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl

from smtp_checks.shared.errors import SmtpChecksError
from smtp_checks.shared.probe.failures import FailureKind
from smtp_checks.shared.probe.spec import TlsMode, TlsSettings
from smtp_checks.shared.probe.tls import client_context, handshake_failure
from smtp_checks.shared.probe.wire import connect_failure, transfer_failure

MAX_LINE = 64 * 1024  # bytes: a longer line is a protocol error, not a memory problem
MAX_ANSWER = 4 * 1024 * 1024  # bytes of one command's answer: headers only are ever read


class MailboxError(SmtpChecksError):
    """A look that cannot go on: `kind` classifies it, `detail` says why (unsanitised:
    the look sanitises it)."""

    def __init__(self, kind: FailureKind, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.detail = kind, detail


class LineConnection:
    """One connection to a mailbox server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._budget = MAX_ANSWER

    def new_answer(self) -> None:
        """A command was sent: its answer may take up to MAX_ANSWER bytes."""
        self._budget = MAX_ANSWER

    def _spend(self, data: bytes) -> bytes:
        self._budget -= len(data)
        if self._budget < 0:
            raise MailboxError(FailureKind.PROTOCOL, f"an answer longer than {MAX_ANSWER} bytes")
        return data

    @classmethod
    async def open(cls, host: str, port: int, tls: TlsSettings) -> LineConnection:
        """Connect (with TLS at once for `ssl`); raises MailboxError."""
        context = client_context(tls) if tls.mode is TlsMode.IMPLICIT else None
        try:
            reader, writer = await asyncio.open_connection(
                host, port, ssl=context, server_hostname=host if context else None, limit=MAX_LINE
            )
        except ssl.SSLError as error:
            raise MailboxError(*handshake_failure(error, tls)) from None
        except socket.gaierror as error:
            raise MailboxError(FailureKind.DNS, f"{error.strerror or error} ({host})") from None
        except OSError as error:
            raise MailboxError(*connect_failure(error)) from None
        return cls(reader, writer)

    async def start_tls(self, host: str, tls: TlsSettings) -> None:
        """Upgrade to TLS, right after the server's go-ahead. Anything the server sent after
        it, still in clear text, would be read as if it had come over TLS (a man in the
        middle's forged answers): refused."""
        # asyncio keeps what it read already across start_tls (in a private buffer).
        if getattr(self._reader, "_buffer", b""):
            raise MailboxError(FailureKind.PROTOCOL, "data after the go-ahead for TLS, in clear")
        try:
            await self._writer.start_tls(client_context(tls), server_hostname=host)
        except (OSError, EOFError) as error:
            raise MailboxError(*handshake_failure(error, tls)) from None

    async def send(self, line: str | bytes) -> None:
        data = line.encode("utf-8") if isinstance(line, str) else line
        self.new_answer()
        if b"\r" in data or b"\n" in data:
            raise MailboxError(FailureKind.PROTOCOL, "a command cannot contain a line break")
        try:
            self._writer.write(data + b"\r\n")
            await self._writer.drain()
        except OSError as error:
            raise MailboxError(*transfer_failure(error)) from None

    async def line(self) -> bytes:
        """The next line, without its CRLF."""
        try:
            data = await self._reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            raise MailboxError(FailureKind.NETWORK, "connection closed by the server") from None
        except asyncio.LimitOverrunError:
            raise MailboxError(
                FailureKind.PROTOCOL, f"a line longer than {MAX_LINE} bytes"
            ) from None
        except (OSError, ssl.SSLError) as error:
            raise MailboxError(*transfer_failure(error)) from None
        return self._spend(data).rstrip(b"\r\n")

    async def exactly(self, count: int) -> bytes:
        """`count` bytes (an IMAP literal)."""
        if count > self._budget:
            raise MailboxError(FailureKind.PROTOCOL, f"an answer longer than {MAX_ANSWER} bytes")
        try:
            return self._spend(await self._reader.readexactly(count))
        except asyncio.IncompleteReadError:
            raise MailboxError(FailureKind.NETWORK, "connection closed by the server") from None
        except (OSError, ssl.SSLError) as error:
            raise MailboxError(*transfer_failure(error)) from None

    def close(self) -> None:
        """Close without waiting: a hostile server must not hold us past the deadline."""
        with contextlib.suppress(Exception):
            self._writer.transport.abort()
