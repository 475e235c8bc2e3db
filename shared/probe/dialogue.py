"""The SMTP session of a check as a protocol without I/O: what to send next, what each reply
means, which phase it is in and how it failed. It touches no socket and no clock.

A driver (shared/probe/asyncio_driver.py for the workers, shared/probe/socket_driver.py for
the one-shot CLI) connects, then loops: it asks `next_action()` and does it (send bytes,
wait for bytes, start TLS, close), and tells the session what happened, with the time it
happened on its own clock (`received`, `tls_started`, `closed_by_peer`, `failed`,
`timed_out`). The same bytes from a server give the same `ProbeResult` through either.

`time` runs from `started_at` (before the connection is opened) to the arrival of the QUIT
reply, as the Perl plugin measures it; phase times run from one event to the next.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from smtp_checks.shared.errors import SmtpChecksError
from smtp_checks.shared.probe import proxy_protocol
from smtp_checks.shared.probe.failures import FailureKind, ProbeFailure
from smtp_checks.shared.probe.phases import Phase
from smtp_checks.shared.probe.proxy_protocol import Endpoint
from smtp_checks.shared.probe.replies import ProtocolViolation, Reply, ReplyReader
from smtp_checks.shared.probe.result import ProbeResult, RelayAnswer, TlsInfo
from smtp_checks.shared.probe.spec import Mode, ProbeSpec, TlsMode
from smtp_checks.shared.redaction import MASK, Redactor
from smtp_checks.shared.sanitize import sanitize

if TYPE_CHECKING:
    from smtp_checks.shared.probe.sasl import Mechanism

_MAX_AUTH_STEPS = 4
# Characters of a reply an `expect`/`response` pattern is searched in: a hostile reply can
# be long, and a pattern that backtracks badly must not hold the worker's loop for long.
_MAX_MATCHED = 4096
_WAITING_FOR = {
    Phase.CONNECT: "while connecting",
    Phase.TLS: "during the TLS handshake",
    Phase.BANNER: "waiting for the banner",
    Phase.EHLO: "waiting for the EHLO reply",
    Phase.COMMAND: "waiting for a command's reply",
    Phase.AUTH: "during AUTH",
    Phase.MAIL: "waiting for the MAIL FROM reply",
    Phase.RCPT: "waiting for the RCPT TO reply",
    Phase.DATA: "during DATA",
    Phase.QUIT: "waiting for the QUIT reply",
}


# --- what the driver is asked to do --------------------------------------------------------


@dataclass(frozen=True)
class Send:
    data: bytes


@dataclass(frozen=True)
class Receive:
    """Wait for bytes from the server (and give them to `received`)."""


@dataclass(frozen=True)
class StartTls:
    server_hostname: str


@dataclass(frozen=True)
class Close:
    graceful: bool  # False: abort, a hostile peer must not hold us past the deadline


Action = Send | Receive | StartTls | Close
RECEIVE = Receive()


# --- what the dialogue itself yields (inside this module) ----------------------------------


@dataclass(frozen=True)
class _Say:
    line: str
    shown: str | None = None  # replaces the line in the transcript (secrets)


@dataclass(frozen=True)
class _SayRaw:
    data: bytes


@dataclass(frozen=True)
class _Hear:
    """The next reply."""


@dataclass(frozen=True)
class _Secure:
    """Start TLS; resumes once it is established."""


_Step = _Say | _SayRaw | _Hear | _Secure
_HEAR = _Hear()
_SECURE = _Secure()


class _Refused(SmtpChecksError):
    def __init__(self, kind: FailureKind, detail: str, reply: Reply | None = None) -> None:
        super().__init__(detail)
        self.kind, self.detail, self.reply = kind, detail, reply


Dialogue = Generator[_Step, Reply | None, None]


class SmtpSession:
    """One check's session, driven by a driver. `message` is the mail to send (message mode),
    already built; `started_at` is when the driver started the clock."""

    def __init__(
        self, spec: ProbeSpec, *, helo_name: str, message: bytes | None, started_at: float
    ) -> None:
        self.spec = spec
        self.helo_name = helo_name
        self.transcript: list[str] | None = [] if spec.record_transcript else None
        self._message = message
        self._reader = ReplyReader(self.transcript)
        self._started_at = started_at
        self._phase = Phase.CONNECT
        self._phase_started = started_at
        self._phase_times: dict[Phase, float] = {}
        self._last_event_at = started_at
        self._tls: TlsInfo | None = None
        self._relay: RelayAnswer | None = None
        self._sent_at: float | None = None  # when the server accepted the message (DATA)
        self._address: str | None = None
        self._endpoints: tuple[Endpoint | None, Endpoint | None] = (None, None)
        self._failure: ProbeFailure | None = None
        self._ended_at: float | None = None
        self._outbox: list[Action] = []
        self._waiting = False  # for a reply
        self._dialogue: Dialogue | None = None
        self._closed = False
        self._redact = Redactor()

    # --- events from the driver ------------------------------------------------------------

    def trying(self, address: str) -> None:
        """The driver connects to `address` (one of the server's, in the resolver's order)."""
        self._address = address

    def connected(
        self, at: float, *, local: Endpoint | None = None, peer: Endpoint | None = None
    ) -> None:
        """The TCP connection is up, from `local` to `peer` (what a PROXY header names)."""
        self._endpoints = (local, peer)
        self._last_event_at = at
        self._dialogue = self._converse()
        self._advance(None)

    def received(self, data: bytes, at: float) -> None:
        """Bytes from the server, arrived at `at`."""
        if self.done:
            return
        self._last_event_at = at
        try:
            self._reader.feed(data, at)
        except ProtocolViolation as violation:
            self._fail(FailureKind.PROTOCOL, str(violation), at=at)

    def tls_started(self, info: TlsInfo, at: float) -> None:
        self._tls = info
        self._last_event_at = at
        self._advance(None)

    def closed_by_peer(self, at: float) -> None:
        self.failed(FailureKind.NETWORK, "connection closed by the server", at)

    def failed(self, kind: FailureKind, detail: str, at: float) -> None:
        """The driver met an error of its own (refused, reset, TLS handshake, certificate)."""
        if self.done:
            return
        if self._phase is Phase.QUIT and kind is not FailureKind.PROTOCOL:
            # The work is done; a server that hangs up instead of saying 221 is rude, not
            # broken. Only the deadline still applies to QUIT.
            self._finish(at)
            return
        self._fail(kind, detail, at=at)

    def timed_out(self, at: float, *, deadline_expired: bool = True) -> None:
        """The check's deadline passed (or the kernel gave up: `deadline_expired=False`)."""
        if self.done:
            return
        waiting = _WAITING_FOR[self._phase]
        detail = (
            f"timeout after {self.spec.timeout:g}s {waiting}"
            if deadline_expired
            else f"timed out {waiting}"
        )
        self._fail(FailureKind.TIMEOUT, detail, at=at)

    # --- what the driver does next ---------------------------------------------------------

    def next_action(self) -> Action:
        """Send, Receive, StartTls or Close; after Close the result is ready."""
        while True:
            if self._outbox:
                return self._outbox.pop(0)
            if self.done:
                self._closed = True
                return Close(graceful=self._failure is None)
            if not self._waiting:
                return RECEIVE  # not connected yet, or TLS under way: nothing to do here
            reply = self._reader.next_reply()
            if reply is None:
                return RECEIVE
            self._last_event_at = reply.received_at
            self._waiting = False
            self._advance(reply)

    @property
    def done(self) -> bool:
        return self._failure is not None or self._ended_at is not None

    @property
    def phase(self) -> Phase:
        return self._phase

    def result(self) -> ProbeResult:
        ended = self._ended_at if self._ended_at is not None else self._last_event_at
        return ProbeResult(
            time=ended - self._started_at,
            phase_times=dict(self._phase_times),
            failure=self._failure,
            tls=self._tls,
            # A hostile server could echo a secret back: the transcript shows none.
            transcript=tuple(self._redact(line) for line in self.transcript or ()),
            relay=self._relay,
            sent_after=None if self._sent_at is None else self._sent_at - self._started_at,
            # News only when the host is a name: an address literal is its own address.
            address=self._address if self._address != self.spec.host else None,
        )

    # --- running the dialogue --------------------------------------------------------------

    def _advance(self, value: Reply | None) -> None:
        """Resume the dialogue with `value` until it waits for a reply or for TLS."""
        assert self._dialogue is not None
        try:
            step = self._dialogue.send(value)
            while isinstance(step, _Say | _SayRaw):
                self._outbox.append(Send(self._bytes_of(step)))
                step = self._dialogue.send(None)
        except _Refused as refusal:
            self._fail(refusal.kind, refusal.detail, refusal.reply, at=self._last_event_at)
            return
        except StopIteration:
            self._finish(self._last_event_at)
            return
        if isinstance(step, _Secure):
            self._outbox.append(StartTls(self.spec.host))  # resumed by `tls_started`
        else:
            self._waiting = True

    def _bytes_of(self, step: _Say | _SayRaw) -> bytes:
        if isinstance(step, _SayRaw):
            return step.data
        if "\r" in step.line or "\n" in step.line:
            raise ValueError("an SMTP command cannot contain a line break")
        if self.transcript is not None:
            self.transcript.append("C: " + (step.line if step.shown is None else step.shown))
        return step.line.encode("utf-8") + b"\r\n"

    def _begin(self, phase: Phase) -> None:
        """Close the phase running since the last event and start `phase`."""
        self._account(self._last_event_at)
        self._phase = phase

    def _account(self, at: float) -> None:
        self._phase_times[self._phase] = (
            self._phase_times.get(self._phase, 0.0) + at - self._phase_started
        )
        self._phase_started = at

    def _finish(self, at: float) -> None:
        self._account(at)
        self._ended_at = at

    def _fail(
        self, kind: FailureKind, detail: str, reply: Reply | None = None, *, at: float
    ) -> None:
        self._account(at)
        self._last_event_at = at
        code = reply.code if reply is not None else None
        self._failure = ProbeFailure.make(kind, self._phase, self._redact(detail), code)
        self._outbox.clear()

    # --- the dialogue ----------------------------------------------------------------------

    def _converse(self) -> Dialogue:
        if self.spec.proxy_protocol is not None:
            yield self._proxy_header(self.spec.proxy_protocol)
        if self.spec.tls.mode is TlsMode.IMPLICIT:
            self._begin(Phase.TLS)
            yield _SECURE
        self._begin(Phase.BANNER)
        banner = yield from self._hear()
        if banner.code != 220:
            raise _Refused(FailureKind.REJECTED, f"session refused: {banner}", banner)
        _expect("banner", self.spec.expect, banner)
        self._begin(Phase.EHLO)
        extensions = yield from self._greet()
        if self.spec.tls.mode is TlsMode.STARTTLS:
            self._begin(Phase.TLS)
            yield from self._start_tls(extensions)
            self._begin(Phase.EHLO)
            extensions = yield from self._greet()
        if self.spec.commands:
            self._begin(Phase.COMMAND)
            for step in self.spec.commands:
                reply = yield from self._command(step.command)
                _expect(step.command, step.response, reply)
        if self.spec.mode is Mode.RELAY:
            yield from self._test_relay()  # never authenticated: that is the point
        else:
            if self.spec.credentials is not None:
                self._begin(Phase.AUTH)
                yield from self._authenticate(extensions.get("AUTH"))
            if self.spec.mode.sends_message and self._message is not None:
                yield from self._send_message(self._message)
        self._begin(Phase.QUIT)
        yield _Say("QUIT")
        yield from self._hear()

    def _proxy_header(self, version: str) -> _SayRaw:
        """The PROXY header, before anything else (TLS included), naming the real socket's
        source and destination."""
        local, peer = self._endpoints
        if local is None or peer is None:
            raise _Refused(FailureKind.NETWORK, "the connection's addresses are unknown")
        if self.transcript is not None:
            self.transcript.append("C: " + proxy_protocol.shown(version, local, peer))
        return _SayRaw(proxy_protocol.proxy_header(version, local, peer))

    def _hear(self) -> Generator[_Step, Reply | None, Reply]:
        reply = yield _HEAR
        assert reply is not None
        return reply

    def _command(
        self, line: str, shown: str | None = None
    ) -> Generator[_Step, Reply | None, Reply]:
        yield _Say(line, shown)
        return (yield from self._hear())

    def _greet(self) -> Generator[_Step, Reply | None, dict[str, list[str]]]:
        reply = yield from self._command(f"EHLO {self.helo_name}")
        if reply.code == 250:
            return _extensions(reply)
        if 500 <= reply.code < 600:
            reply = yield from self._command(f"HELO {self.helo_name}")
            if reply.code == 250:
                return {}
        raise _Refused(FailureKind.REJECTED, f"EHLO refused: {reply}", reply)

    def _start_tls(self, extensions: dict[str, list[str]]) -> Dialogue:
        # Never go on in clear text when TLS was asked for: AUTH would expose the password.
        if "STARTTLS" not in extensions:
            raise _Refused(FailureKind.TLS, "server does not offer STARTTLS")
        reply = yield from self._command("STARTTLS")
        if reply.code != 220:
            raise _Refused(FailureKind.TLS, f"STARTTLS refused: {reply}", reply)
        yield _SECURE

    def _authenticate(self, offered: list[str] | None) -> Dialogue:
        credentials = self.spec.credentials
        assert credentials is not None
        mechanism = self._mechanism(offered)
        self._redact.add(credentials.password)
        initial = mechanism.initial_response(credentials)
        line = shown = f"AUTH {mechanism.name}"
        if initial is not None:
            encoded = _encode(initial, self._redact)
            line, shown = f"{line} {encoded}", f"{shown} {MASK}"
        reply = yield from self._command(line, shown)
        step = 0
        explained: str | None = None  # the server's own words on why, when it gives them
        while reply.code == 334:
            if step == _MAX_AUTH_STEPS:
                raise _Refused(FailureKind.PROTOCOL, "AUTH exchange does not end", reply)
            challenge = mechanism.challenge(reply.text)
            if challenge is None:
                raise _Refused(FailureKind.PROTOCOL, "AUTH challenge is not base64")
            explained = mechanism.explain(challenge)
            answer = mechanism.answer(challenge, step, credentials)
            encoded = _encode(answer, self._redact) if answer else ""
            reply = yield from self._command(encoded, MASK if answer else "")
            step += 1
        if reply.code != 235:
            # A hostile server could echo what we sent: `_fail` masks every secret.
            why = f" ({explained})" if explained else ""
            raise _Refused(FailureKind.AUTH, f"authentication failed: {reply}{why}", reply)

    def _mechanism(self, offered: list[str] | None) -> Mechanism:
        from smtp_checks.shared.probe import sasl  # noqa: PLC0415 (hashlib: only for AUTH)

        credentials = self.spec.credentials
        assert credentials is not None
        if credentials.mechanism is not None:
            return sasl.SUPPORTED[credentials.mechanism.upper()]
        if not offered:
            raise _Refused(FailureKind.AUTH, "server offers no AUTH")
        mechanism = sasl.choose(offered, encrypted=self._tls is not None)
        if mechanism is None:
            raise _Refused(FailureKind.AUTH, f"no supported AUTH mechanism in {' '.join(offered)}")
        return mechanism

    def _mail_from(self) -> Dialogue:
        spec = self.spec.message
        assert spec is not None
        self._begin(Phase.MAIL)
        reply = yield from self._command(f"MAIL FROM:<{spec.sender}>")
        if reply.code != 250:
            raise _Refused(
                FailureKind.REJECTED, f"MAIL FROM <{spec.sender}> refused: {reply}", reply
            )

    def _test_relay(self) -> Dialogue:
        """RCPT TO an outside address, unauthenticated; its answer is the verdict (the
        report words it). RSET then forgets the envelope: DATA is never sent."""
        spec = self.spec.message
        assert spec is not None
        yield from self._mail_from()
        self._begin(Phase.RCPT)
        recipient = spec.to[0]
        reply = yield from self._command(f"RCPT TO:<{recipient}>")
        self._relay = RelayAnswer(sanitize(recipient), reply.code, sanitize(str(reply)))
        self._begin(Phase.QUIT)
        yield from self._command("RSET")

    def _send_message(self, message: bytes) -> Dialogue:
        spec = self.spec.message
        assert spec is not None
        yield from self._mail_from()
        self._begin(Phase.RCPT)
        for recipient in spec.recipients:
            reply = yield from self._command(f"RCPT TO:<{recipient}>")
            if reply.code not in (250, 251):
                raise _Refused(
                    FailureKind.REJECTED, f"RCPT TO <{recipient}> refused: {reply}", reply
                )
        self._begin(Phase.DATA)
        reply = yield from self._command("DATA")
        if reply.code != 354:
            raise _Refused(FailureKind.REJECTED, f"DATA refused: {reply}", reply)
        yield _SayRaw(message)
        reply = yield from self._hear()
        if reply.code != 250:
            raise _Refused(FailureKind.REJECTED, f"message refused: {reply}", reply)
        self._sent_at = reply.received_at


def _expect(what: str, pattern: str | None, reply: Reply) -> None:
    """A reply that does not match the check's pattern ends the check: it names the step,
    the pattern and the reply (the failure sanitises it)."""
    if pattern is not None and re.search(pattern, str(reply)[:_MAX_MATCHED]) is None:
        raise _Refused(FailureKind.UNEXPECTED, f"{what}: expected /{pattern}/, got: {reply}", reply)


def _extensions(reply: Reply) -> dict[str, list[str]]:
    """EHLO keywords and their parameters; the first line is the greeting."""
    extensions: dict[str, list[str]] = {}
    for line in reply.lines[1:]:
        # Old servers announce "AUTH=LOGIN PLAIN" beside (or instead of) "AUTH LOGIN PLAIN".
        words = line.replace("=", " ", 1).split()
        if words:
            extensions[words[0].upper()] = words[1:]
    return extensions


def _encode(data: bytes, redact: Redactor) -> str:
    """`data` as it goes on the wire (base64), remembered as a secret: a server may echo
    it back."""
    from smtp_checks.shared.probe.sasl import encode  # noqa: PLC0415 (only for AUTH)

    encoded = encode(data)
    redact.add(encoded)
    return encoded
