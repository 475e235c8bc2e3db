"""The IMAP side of a look (RFC 9051 / 3501, the part a monitoring check needs): greeting,
STARTTLS, AUTHENTICATE PLAIN (or LOGIN), then in each folder a header search for the token,
the `Received:` headers of what was found, and the deletion of it and of what earlier runs
of the check left (UID STORE \\Deleted, UID EXPUNGE: nothing else in the mailbox is touched).

Why not aioimaplib: 2.0.3 has neither STARTTLS nor AUTHENTICATE PLAIN, and opens its own
connection, outside the check's TLS settings.
"""

from __future__ import annotations

import base64
import re
import time

from smtp_checks.shared.mailbox.connection import LineConnection, MailboxError
from smtp_checks.shared.mailbox.received import received_dates
from smtp_checks.shared.mailbox.spec import Found, MailboxSpec, Wanted
from smtp_checks.shared.probe.failures import FailureKind
from smtp_checks.shared.probe.message import CHECK_HEADER, TOKEN_HEADER
from smtp_checks.shared.probe.spec import TlsMode

_LITERAL = re.compile(rb"\{(\d+)\}$")
_MAX_LITERAL = 1024 * 1024  # bytes of one literal: headers only are ever fetched
_MAX_RESPONSES = 100_000  # untagged lines of one command: a hostile server must end somewhere


class ImapSession:
    """One logged-in IMAP session (`await ImapSession.login(...)`)."""

    def __init__(self, connection: LineConnection) -> None:
        self._connection = connection
        self._tags = 0
        self.capabilities: set[str] = set()

    @classmethod
    async def login(cls, connection: LineConnection, spec: MailboxSpec) -> ImapSession:
        session = cls(connection)
        greeting = await connection.line()
        if not greeting.startswith(b"* OK") and not greeting.startswith(b"* PREAUTH"):
            raise MailboxError(FailureKind.PROTOCOL, f"IMAP greeting: {_text(greeting)}")
        await session._read_capabilities()
        if spec.tls.mode is TlsMode.STARTTLS:
            if "STARTTLS" not in session.capabilities:
                raise MailboxError(FailureKind.TLS, "IMAP server does not offer STARTTLS")
            await session.command("STARTTLS", failure=FailureKind.TLS)
            await connection.start_tls(spec.host, spec.tls)
            await session._read_capabilities()  # again: they may differ once encrypted
        if not greeting.startswith(b"* PREAUTH"):
            await session._authenticate(spec)
            await session._read_capabilities()  # UIDPLUS and the like come after login
        return session

    async def look(self, folder: str, wanted: Wanted) -> Found:
        """In `folder`: when the message was seen (None: not there), the dates of its
        `Received:` headers, and the leftovers deleted. A folder that does not exist is
        empty."""
        try:
            await self.command(f"SELECT {_quoted(folder)}")
        except MailboxError as error:
            if error.kind is FailureKind.REJECTED:
                return None, (), 0
            raise
        found = await self._search(f"HEADER {TOKEN_HEADER} {_quoted(wanted.token)}")
        seen_at = time.time() if found else None
        received: tuple[float, ...] = ()
        if found:
            received = await self._received(found[0])
        leftovers = await self._search(
            f"HEADER {CHECK_HEADER} {_quoted(wanted.check_tag)} "
            f"NOT HEADER {TOKEN_HEADER} {_quoted(wanted.token)}"
        )
        await self._delete(found + leftovers)
        return seen_at, received, len(leftovers)

    async def logout(self) -> None:
        """LOGOUT; its `* BYE` is the expected answer, not a failure."""
        tag = self._next_tag()
        await self._connection.send(f"{tag} LOGOUT")
        await self._responses(tag, "LOGOUT", FailureKind.REJECTED, logging_out=True)

    # --- commands -------------------------------------------------------------------------

    async def command(
        self, line: str, *, shown: str | None = None, failure: FailureKind = FailureKind.REJECTED
    ) -> list[bytes]:
        """Send a tagged command; its untagged responses (literals inlined). A NO or BAD
        raises MailboxError of kind `failure`."""
        tag = self._next_tag()
        await self._connection.send(f"{tag} {line}")
        return await self._responses(tag, shown or line.split(" ", 1)[0], failure)

    async def _responses(
        self, tag: str, what: str, failure: FailureKind, *, logging_out: bool = False
    ) -> list[bytes]:
        untagged: list[bytes] = []
        while len(untagged) < _MAX_RESPONSES:
            line = await self._full_line()
            if line.startswith(tag.encode() + b" "):
                status = line[len(tag) + 1 :]
                if status[:2].upper() == b"OK":
                    return untagged
                raise MailboxError(failure, f"{what} refused: {_text(status)}")
            if line.startswith(b"* BYE") and not logging_out:
                raise MailboxError(FailureKind.NETWORK, f"server closed the session: {_text(line)}")
            untagged.append(line)
        raise MailboxError(FailureKind.PROTOCOL, f"{what}: the server's answer does not end")

    async def _full_line(self) -> bytes:
        """A response line with its literals ({N} then N bytes) inlined."""
        line = await self._connection.line()
        while (match := _LITERAL.search(line)) is not None:
            size = int(match.group(1))
            if size > _MAX_LITERAL:
                raise MailboxError(FailureKind.PROTOCOL, f"a literal of {size} bytes")
            line = line + b"\r\n" + await self._connection.exactly(size)
            line += await self._connection.line()
        return line

    async def _read_capabilities(self) -> None:
        for line in await self.command("CAPABILITY"):
            if line.upper().startswith(b"* CAPABILITY "):
                self.capabilities = {word.upper() for word in _text(line).split()[2:]}

    async def _authenticate(self, spec: MailboxSpec) -> None:
        if "AUTH=PLAIN" in self.capabilities:
            initial = base64.b64encode(
                b"\0" + spec.username.encode() + b"\0" + spec.password.encode()
            ).decode()
            if "SASL-IR" in self.capabilities:
                await self.command(
                    f"AUTHENTICATE PLAIN {initial}", shown="AUTHENTICATE", failure=FailureKind.AUTH
                )
                return
            tag = self._next_tag()
            await self._connection.send(f"{tag} AUTHENTICATE PLAIN")
            line = await self._connection.line()
            if line.startswith(b"+"):
                await self._connection.send(initial)
            elif line.startswith(tag.encode() + b" "):
                raise MailboxError(FailureKind.AUTH, f"AUTHENTICATE refused: {_text(line)}")
            await self._responses(tag, "AUTHENTICATE", FailureKind.AUTH)
            return
        if "LOGINDISABLED" in self.capabilities:
            raise MailboxError(FailureKind.AUTH, "the server allows no login (LOGINDISABLED)")
        await self.command(
            f"LOGIN {_quoted(spec.username)} {_quoted(spec.password)}",
            shown="LOGIN",
            failure=FailureKind.AUTH,
        )

    async def _search(self, criteria: str) -> list[str]:
        uids: list[str] = []
        for line in await self.command(f"UID SEARCH {criteria}", shown="SEARCH"):
            if line.upper().startswith(b"* SEARCH"):
                uids += [word for word in _text(line).split()[2:] if word.isdigit()]
        return uids

    async def _received(self, uid: str) -> tuple[float, ...]:
        lines = await self.command(
            f"UID FETCH {uid} (BODY.PEEK[HEADER.FIELDS (RECEIVED)])", shown="FETCH"
        )
        return received_dates(b"\r\n".join(lines).split(b"\r\n", 1)[-1])

    async def _delete(self, uids: list[str]) -> None:
        if not uids:
            return
        uid_set = ",".join(uids)
        await self.command(f"UID STORE {uid_set} +FLAGS.SILENT (\\Deleted)", shown="STORE")
        # Without UIDPLUS, EXPUNGE would also remove what the mailbox's owner marked deleted:
        # ours stay marked, and go at the owner's next expunge.
        if "UIDPLUS" in self.capabilities:
            await self.command(f"UID EXPUNGE {uid_set}", shown="EXPUNGE")

    def _next_tag(self) -> str:
        self._tags += 1
        return f"s{self._tags}"


def _quoted(value: str) -> str:
    """An IMAP quoted string (no CR, LF or NUL can be in one: the config refuses them)."""
    if any(c in value for c in "\r\n\0"):
        raise MailboxError(FailureKind.PROTOCOL, "a line break in an IMAP string")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")
