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
from dataclasses import dataclass

from smtp_checks.shared.mailbox.connection import LineConnection, MailboxError
from smtp_checks.shared.mailbox.received import header_date, received_dates
from smtp_checks.shared.mailbox.spec import Found, MailboxSpec, Wanted
from smtp_checks.shared.probe.failures import FailureKind
from smtp_checks.shared.probe.message import CHECK_HEADER, TOKEN_HEADER
from smtp_checks.shared.probe.spec import TlsMode

_LITERAL = re.compile(rb"\{(\d+)\}$")
_UID = re.compile(rb"\bUID (\d+)", re.IGNORECASE)
_MAX_RESPONSES = 10_000  # untagged lines of one answer (and its bytes are bounded too)


@dataclass(frozen=True)
class _Untagged:
    """An untagged response: its text without its literals, and the literals."""

    line: bytes
    literals: tuple[bytes, ...] = ()


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

    async def look(self, folder: str, wanted: Wanted, *, required: bool) -> Found:
        """In `folder`: when the message was seen (None: not there), the dates of its
        `Received:` headers, and the leftovers deleted. A junk folder (not `required`) that
        cannot be selected is empty; the mailbox itself must be there."""
        try:
            await self.command(f"SELECT {mailbox_name(folder)}")
        except MailboxError as error:
            if error.kind is FailureKind.REJECTED and not required:
                return None, (), 0
            raise
        found = await self._search(f"UNDELETED HEADER {TOKEN_HEADER} {quoted(wanted.token)}")
        seen_at = time.time() if found else None
        received = await self._received(found[0]) if found else ()
        leftovers = await self._leftovers(wanted)
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
    ) -> list[_Untagged]:
        """Send a tagged command; its untagged responses. A NO or BAD raises MailboxError
        of kind `failure`."""
        tag = self._next_tag()
        await self._connection.send(f"{tag} {line}")
        return await self._responses(tag, shown or line.split(" ", 1)[0], failure)

    async def _responses(
        self, tag: str, what: str, failure: FailureKind, *, logging_out: bool = False
    ) -> list[_Untagged]:
        untagged: list[_Untagged] = []
        while len(untagged) < _MAX_RESPONSES:
            response = await self._response()
            line = response.line
            if line.startswith(tag.encode() + b" "):
                status = line[len(tag) + 1 :]
                if status[:2].upper() == b"OK":
                    return untagged
                raise MailboxError(failure, f"{what} refused: {_text(status)}")
            if line.startswith(b"* BYE") and not logging_out:
                raise MailboxError(FailureKind.NETWORK, f"server closed the session: {_text(line)}")
            untagged.append(response)
        raise MailboxError(FailureKind.PROTOCOL, f"{what}: the server's answer does not end")

    async def _response(self) -> _Untagged:
        """A response line, with the literals ({N}, then N bytes) it carries."""
        line = await self._connection.line()
        literals: list[bytes] = []
        while (match := _LITERAL.search(line)) is not None:
            literals.append(await self._connection.exactly(int(match.group(1))))
            line = line[: match.start()] + b"{}" + await self._connection.line()
        return _Untagged(line, tuple(literals))

    async def _read_capabilities(self) -> None:
        for response in await self.command("CAPABILITY"):
            if response.line.upper().startswith(b"* CAPABILITY "):
                words = _text(response.line).split()[2:]
                self.capabilities = {word.upper() for word in words}

    async def _authenticate(self, spec: MailboxSpec) -> None:
        """AUTHENTICATE PLAIN when offered, else AUTHENTICATE LOGIN, else the LOGIN
        command (unless the server disables it)."""
        if "AUTH=PLAIN" not in self.capabilities and "AUTH=LOGIN" in self.capabilities:
            await self._authenticate_login(spec)
            return
        if "AUTH=PLAIN" in self.capabilities:
            initial = plain_response(spec.username, spec.password)
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
            f"LOGIN {quoted(spec.username)} {quoted(spec.password)}",
            shown="LOGIN",
            failure=FailureKind.AUTH,
        )

    async def _authenticate_login(self, spec: MailboxSpec) -> None:
        """SASL LOGIN: the username, then the password, each asked for by a continuation."""
        tag = self._next_tag()
        await self._connection.send(f"{tag} AUTHENTICATE LOGIN")
        for answer in (spec.username, spec.password):
            line = await self._connection.line()
            if not line.startswith(b"+"):
                raise MailboxError(FailureKind.AUTH, f"AUTHENTICATE refused: {_text(line)}")
            await self._connection.send(base64.b64encode(answer.encode()).decode())
        await self._responses(tag, "AUTHENTICATE", FailureKind.AUTH)

    async def _search(self, criteria: str) -> list[str]:
        uids: list[str] = []
        for response in await self.command(f"UID SEARCH {criteria}", shown="SEARCH"):
            if response.line.upper().startswith(b"* SEARCH"):
                uids += [word for word in _text(response.line).split()[2:] if word.isdigit()]
        return uids

    async def _headers(self, uids: list[str], field: str) -> dict[str, bytes]:
        """The `field` header block of each of `uids` (what a FETCH answer names by UID;
        other untagged answers, EXISTS and the like, are not headers)."""
        responses = await self.command(
            f"UID FETCH {','.join(uids)} (BODY.PEEK[HEADER.FIELDS ({field})])", shown="FETCH"
        )
        blocks: dict[str, bytes] = {}
        for response in responses:
            uid = _UID.search(response.line)
            if b" FETCH " in response.line.upper() and uid is not None and response.literals:
                blocks[uid.group(1).decode()] = response.literals[0]
        return blocks

    async def _received(self, uid: str) -> tuple[float, ...]:
        block = (await self._headers([uid], "RECEIVED")).get(uid, b"")
        return received_dates(block)

    async def _leftovers(self, wanted: Wanted) -> list[str]:
        """The check's messages of other runs, old enough to be over."""
        candidates = await self._search(
            f"UNDELETED HEADER {CHECK_HEADER} {quoted(wanted.check_tag)} "
            f"NOT HEADER {TOKEN_HEADER} {quoted(wanted.token)}"
        )
        if not candidates:
            return []
        dates = await self._headers(candidates, "DATE")
        oldest = time.time() - wanted.leftover_age
        old = []
        for uid in candidates:
            sent = header_date(_text(dates.get(uid, b"")).partition(":")[2])  # "Date: ..."
            if sent is not None and sent < oldest:
                old.append(uid)
        return old

    async def _delete(self, uids: list[str]) -> None:
        if not uids:
            return
        uid_set = ",".join(uids)
        await self.command(f"UID STORE {uid_set} +FLAGS.SILENT (\\Deleted)", shown="STORE")
        # Without UIDPLUS, EXPUNGE would also remove what the mailbox's owner marked deleted:
        # ours stay marked (and unsearched: UNDELETED), and go at the owner's next expunge.
        if "UIDPLUS" in self.capabilities:
            await self.command(f"UID EXPUNGE {uid_set}", shown="EXPUNGE")

    def _next_tag(self) -> str:
        self._tags += 1
        return f"s{self._tags}"


def plain_response(username: str, password: str) -> str:
    """SASL PLAIN's initial response (RFC 4616), base64: it carries the password."""
    return base64.b64encode(b"\0" + username.encode() + b"\0" + password.encode()).decode()


def quoted(value: str) -> str:
    """An IMAP quoted string (no CR, LF or NUL can be in one: the config refuses them)."""
    if any(c in value for c in "\r\n\0"):
        raise MailboxError(FailureKind.PROTOCOL, "a line break in an IMAP string")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def mailbox_name(folder: str) -> str:
    """A folder's name as IMAP4rev1 writes it: modified UTF-7 (RFC 3501 5.1.3) for anything
    beyond printable ASCII, `&` as `&-`."""
    encoded, pending = [], ""

    def flush() -> None:
        nonlocal pending
        if pending:
            utf7 = base64.b64encode(pending.encode("utf-16-be")).decode().rstrip("=")
            encoded.append("&" + utf7.replace("/", ",") + "-")
            pending = ""

    for char in folder:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            encoded.append("&-" if char == "&" else char)
        else:
            pending += char
    flush()
    return quoted("".join(encoded))


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")
