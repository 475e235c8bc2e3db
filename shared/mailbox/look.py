"""One look into a mailbox for the message of a run, under one deadline: connect, log in,
search the mailbox and then the junk folders, delete what was found (and what earlier runs
left), log out. Never raises for anything the server does: a failure is in the look."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from time import perf_counter

from smtp_checks.shared.mailbox.connection import LineConnection, MailboxError
from smtp_checks.shared.mailbox.imap import ImapSession, plain_response, quoted
from smtp_checks.shared.mailbox.pop3 import Pop3Session
from smtp_checks.shared.mailbox.spec import (
    MailboxFailure,
    MailboxLook,
    MailboxSpec,
    ReceiveProtocol,
    Wanted,
)
from smtp_checks.shared.probe.failures import FailureKind
from smtp_checks.shared.redaction import Redactor

log = logging.getLogger("smtp_checks.mailbox")


async def look_for(
    spec: MailboxSpec, wanted: Wanted, *, deadline: float | None = None
) -> MailboxLook:
    """Look once. `deadline` (a `time.monotonic()` value) ends the look before
    `spec.timeout` when part of the check's time was spent already."""
    started = perf_counter()
    budget = asyncio.timeout(spec.timeout) if deadline is None else asyncio.timeout_at(deadline)
    connection: LineConnection | None = None
    redact = _redactor(spec)
    try:
        async with budget:
            connection = await LineConnection.open(spec.host, spec.port, spec.tls)
            found_in, seen_at, received, cleaned = await _look(connection, spec, wanted)
    except MailboxError as error:
        failure = MailboxFailure.make(error.kind, redact(error.detail))
        return MailboxLook(time=perf_counter() - started, failure=failure)
    except TimeoutError:
        detail = f"timeout after {spec.timeout:g}s reading the mailbox"
        failure = MailboxFailure.make(FailureKind.TIMEOUT, detail)
        return MailboxLook(time=perf_counter() - started, failure=failure)
    except Exception as error:  # an answer nothing above expected: a failure, never a crash
        log.warning("mailbox look at %s:%d failed unexpectedly: %r", spec.host, spec.port, error)
        detail = f"unexpected answer ({type(error).__name__})"
        failure = MailboxFailure.make(FailureKind.PROTOCOL, detail)
        return MailboxLook(time=perf_counter() - started, failure=failure)
    finally:
        if connection is not None:
            connection.close()
    return MailboxLook(
        time=perf_counter() - started,
        found_in=found_in,
        seen_at=seen_at,
        received=received,
        cleaned=cleaned,
    )


def _redactor(spec: MailboxSpec) -> Redactor:
    """Masks the password, and the password as sent: a server may echo what it got."""
    redact = Redactor()
    redact.add(spec.password)
    redact.add(plain_response(spec.username, spec.password))
    redact.add(base64.b64encode(spec.password.encode()).decode())  # as SASL LOGIN sends it
    with contextlib.suppress(MailboxError):  # a password IMAP cannot quote is never sent so
        redact.add(quoted(spec.password))
    return redact


async def _look(
    connection: LineConnection, spec: MailboxSpec, wanted: Wanted
) -> tuple[str | None, float | None, tuple[float, ...], int]:
    if spec.protocol is ReceiveProtocol.POP3:
        pop3 = await Pop3Session.login(connection, spec)
        seen_at, received, cleaned = await pop3.look(wanted)
        await pop3.quit()  # commits the deletions
        return ("INBOX" if seen_at else None), seen_at, received, cleaned
    imap = await ImapSession.login(connection, spec)
    found_in: str | None = None
    found_at: float | None = None
    found_received: tuple[float, ...] = ()
    cleaned = 0
    for folder in (spec.mailbox, *spec.junk):
        seen_at, received, left = await imap.look(folder, wanted, required=folder == spec.mailbox)
        cleaned += left
        if seen_at is not None and found_in is None:
            found_in, found_at, found_received = folder, seen_at, received
    with contextlib.suppress(MailboxError):  # the work is done: a rude goodbye changes nothing
        await imap.logout()
    return found_in, found_at, found_received, cleaned
