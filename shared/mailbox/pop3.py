"""The POP3 side of a look (RFC 1939, 2595): greeting, STLS, USER/PASS, then the headers of
every message (TOP n 0, newest first) scanned for the token, and DELE of it and of what
earlier runs of the check left; QUIT commits the deletions. POP3 has one folder and no
search: junk folders are IMAP's alone."""

from __future__ import annotations

import time
from email.parser import BytesHeaderParser

from smtp_checks.shared.mailbox.connection import LineConnection, MailboxError
from smtp_checks.shared.mailbox.received import header_date, received_dates
from smtp_checks.shared.mailbox.spec import Found, MailboxSpec, Wanted
from smtp_checks.shared.probe.failures import FailureKind
from smtp_checks.shared.probe.message import CHECK_HEADER, TOKEN_HEADER
from smtp_checks.shared.probe.spec import TlsMode

_MAX_LINES = 100_000  # of one multi-line answer: a hostile server must end somewhere


class Pop3Session:
    """One logged-in POP3 session (`await Pop3Session.login(...)`)."""

    def __init__(self, connection: LineConnection) -> None:
        self._connection = connection

    @classmethod
    async def login(cls, connection: LineConnection, spec: MailboxSpec) -> Pop3Session:
        session = cls(connection)
        greeting = await connection.line()
        if not greeting.startswith(b"+OK"):
            raise MailboxError(FailureKind.PROTOCOL, f"POP3 greeting: {_text(greeting)}")
        if spec.tls.mode is TlsMode.STARTTLS:
            await session.command("STLS", failure=FailureKind.TLS)
            await connection.start_tls(spec.host, spec.tls)
        await session.command(f"USER {spec.username}", shown="USER", failure=FailureKind.AUTH)
        await session.command(f"PASS {spec.password}", shown="PASS", failure=FailureKind.AUTH)
        return session

    async def look(self, wanted: Wanted) -> Found:
        """When the message was seen (None: not there), the dates of its `Received:`
        headers, and the leftovers of earlier runs deleted."""
        numbers = [line.split()[0] for line in await self.listing("LIST") if line.split()]
        if not all(number.isdigit() for number in numbers):
            raise MailboxError(FailureKind.PROTOCOL, "LIST: a message number that is not one")
        seen_at: float | None = None
        received: tuple[float, ...] = ()
        doomed: list[int] = []
        leftovers = 0
        parser = BytesHeaderParser()
        for number in sorted((int(n) for n in numbers), reverse=True):  # ours: likely newest
            headers = parser.parsebytes(b"\r\n".join(await self.listing(f"TOP {number} 0")))
            if str(headers.get(TOKEN_HEADER, "")).strip() == wanted.token:
                seen_at = seen_at or time.time()
                received = received_dates(b"".join(
                    f"Received: {value}\r\n".encode() for value in headers.get_all("Received", [])
                ))  # fmt: skip
                doomed.append(number)
            elif str(headers.get(CHECK_HEADER, "")).strip() == wanted.check_tag and _old(
                headers.get("Date"), wanted
            ):
                leftovers += 1
                doomed.append(number)
        for number in doomed:
            await self.command(f"DELE {number}")
        return seen_at, received, leftovers

    async def quit(self) -> None:
        await self.command("QUIT")

    async def command(
        self, line: str, *, shown: str | None = None, failure: FailureKind = FailureKind.REJECTED
    ) -> bytes:
        await self._connection.send(line)
        reply = await self._connection.line()
        if not reply.startswith(b"+OK"):
            what = shown or line.split(" ", 1)[0]
            raise MailboxError(failure, f"{what} refused: {_text(reply)}")
        return reply

    async def listing(self, line: str) -> list[bytes]:
        """A multi-line answer, without its terminating `.` and dot-unstuffed."""
        await self.command(line)
        lines: list[bytes] = []
        while len(lines) < _MAX_LINES:
            data = await self._connection.line()
            if data == b".":
                return lines
            lines.append(data[1:] if data.startswith(b"..") else data)
        raise MailboxError(
            FailureKind.PROTOCOL, f"{line.split(maxsplit=1)[0]}: the answer does not end"
        )


def _old(date: object, wanted: Wanted) -> bool:
    """A leftover's `Date:` is old enough for its round trip to be over."""
    sent = header_date(date) if date is not None else None
    return sent is not None and sent < time.time() - wanted.leftover_age


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")
