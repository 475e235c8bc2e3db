"""The SMTP probe: run one login or message session against a server and measure it.

The probe measures and classifies; it never judges (thresholds) nor words (plugin output),
never prints and never logs. One deadline bounds the whole session, whatever the server
does. `time` runs from just before the connection is opened to the QUIT reply, as the Perl
plugin measures it: to when the reply's bytes reached the process, not to when this
coroutine got to read them (with many sessions on one loop, that wait is ours).
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import functools
import ipaddress
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from time import perf_counter

from smtp_checks.shared.probe import sasl
from smtp_checks.shared.probe.connection import Reply, SmtpConnection
from smtp_checks.shared.probe.failures import FailureKind, ProbeError, ProbeFailure
from smtp_checks.shared.probe.phases import Phase
from smtp_checks.shared.probe.result import ProbeResult, TlsInfo
from smtp_checks.shared.probe.spec import Mode, ProbeSpec, TlsMode
from smtp_checks.shared.probe.tls import client_context, session_info

_MAX_AUTH_STEPS = 4
_WAITING_FOR = {
    Phase.CONNECT: "while connecting",
    Phase.TLS: "during the TLS handshake",
    Phase.BANNER: "waiting for the banner",
    Phase.EHLO: "waiting for the EHLO reply",
    Phase.AUTH: "during AUTH",
    Phase.MAIL: "waiting for the MAIL FROM reply",
    Phase.RCPT: "waiting for the RCPT TO reply",
    Phase.DATA: "during DATA",
    Phase.QUIT: "waiting for the QUIT reply",
}


async def run_probe(spec: ProbeSpec, *, deadline: float | None = None) -> ProbeResult:
    """Run one session as `spec` says. Never raises for anything the server does.

    `deadline` (a `time.monotonic()` value) ends the session earlier than `spec.timeout`
    when part of the check's time was already spent (waiting for a permit, say); failures
    still word the timeout as configured.
    """
    return await _Session(spec, deadline).run()


class _Session:
    def __init__(self, spec: ProbeSpec, deadline: float | None) -> None:
        self.spec = spec
        self.deadline = deadline
        self.transcript: list[str] | None = [] if spec.record_transcript else None
        self.phase = Phase.CONNECT
        self.phase_times: dict[Phase, float] = {}
        self.connection: SmtpConnection | None = None
        self.ended: float | None = None  # when the QUIT reply arrived (perf_counter)
        self.tls_info: TlsInfo | None = None
        self.helo_name = spec.helo_name or _local_fqdn()

    async def run(self) -> ProbeResult:
        # Built before the clock starts: `time` is the server's time, not ours.
        message = None
        if self.spec.mode is Mode.MESSAGE and self.spec.message is not None:
            from smtp_checks.shared.probe.message import build_message  # noqa: PLC0415 (slow import)

            message = build_message(self.spec.message, self.helo_name)
        failure: ProbeFailure | None = None
        deadline = (
            asyncio.timeout(self.spec.timeout)
            if self.deadline is None
            else asyncio.timeout_at(self.deadline)  # the loop's clock is time.monotonic()
        )
        started = perf_counter()
        try:
            async with deadline:
                await self._converse(message)
        except ProbeError as error:
            failure = error.failure
        except TimeoutError:
            # A kernel-level timeout (ETIMEDOUT) is an OSError caught lower down, so this
            # is the deadline unless asyncio says otherwise.
            detail = f"timeout after {self.spec.timeout:g}s {_WAITING_FOR[self.phase]}"
            if not deadline.expired():
                detail = f"timed out {_WAITING_FOR[self.phase]}"
            failure = ProbeFailure.make(FailureKind.TIMEOUT, self.phase, detail)
        # To the arrival of the QUIT reply, when there was one (smtp_connection.TimedStreamReader).
        elapsed = (self.ended if failure is None and self.ended else perf_counter()) - started
        if self.connection is not None:
            self.connection.close(graceful=failure is None)
        return ProbeResult(
            time=elapsed,
            phase_times=dict(self.phase_times),
            failure=failure,
            tls=self.tls_info,
            transcript=tuple(self.transcript or ()),
        )

    @contextmanager
    def _step(self, phase: Phase) -> Iterator[None]:
        self.phase = phase
        if self.connection is not None:
            self.connection.phase = phase
        started = perf_counter()
        try:
            yield
        finally:
            self.phase_times[phase] = self.phase_times.get(phase, 0.0) + perf_counter() - started

    def _fail(self, kind: FailureKind, detail: str, reply: Reply | None = None) -> ProbeError:
        code = reply.code if reply is not None else None
        return ProbeError(ProbeFailure.make(kind, self.phase, detail, code))

    async def _converse(self, message: bytes | None) -> None:
        with self._step(Phase.CONNECT):
            connection = self.connection = await self._connect()
        if self.spec.tls.mode is TlsMode.IMPLICIT:
            with self._step(Phase.TLS):
                await self._handshake(connection)
        with self._step(Phase.BANNER):
            banner = await connection.read_reply()
            if banner.code != 220:
                raise self._fail(FailureKind.REJECTED, f"session refused: {banner}", banner)
        with self._step(Phase.EHLO):
            extensions = await self._greet(connection)
        if self.spec.tls.mode is TlsMode.STARTTLS:
            with self._step(Phase.TLS):
                await self._start_tls(connection, extensions)
            with self._step(Phase.EHLO):
                extensions = await self._greet(connection)
        if self.spec.credentials is not None:
            with self._step(Phase.AUTH):
                await self._authenticate(connection, extensions.get("AUTH"))
        if message is not None:
            await self._send_message(connection, message)
        with self._step(Phase.QUIT):
            try:
                await connection.command("QUIT")
                self.ended = connection.reply_received_at
            except ProbeError as error:
                # The work is done; a server that hangs up instead of saying 221 is rude, not
                # broken. Only the deadline still applies to QUIT.
                if error.failure.kind is FailureKind.PROTOCOL:
                    raise

    async def _connect(self) -> SmtpConnection:
        addresses = await self._resolve()
        failure = self._fail(FailureKind.NETWORK, "no address to connect to")
        for address in addresses:
            try:
                return await SmtpConnection.open(address, self.spec.port, self.transcript)
            except ConnectionRefusedError:
                failure = self._fail(FailureKind.REFUSED, "Connection refused")
            except OSError as error:
                failure = self._fail(FailureKind.NETWORK, error.strerror or str(error))
        raise failure

    async def _resolve(self) -> list[str]:
        host = self.spec.host
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            pass
        try:
            infos = await _resolve_addresses(host, self.spec.port)
        except OSError as error:
            raise self._fail(FailureKind.DNS, f"{error.strerror or error} ({host})") from None
        return infos

    async def _handshake(self, connection: SmtpConnection) -> None:
        context = client_context(self.spec.tls)
        ssl_object = await connection.start_tls(context, server_hostname=self.spec.host)
        self.tls_info = session_info(ssl_object)

    async def _greet(self, connection: SmtpConnection) -> dict[str, list[str]]:
        reply = await connection.command(f"EHLO {self.helo_name}")
        if reply.code == 250:
            return _extensions(reply)
        if 500 <= reply.code < 600:
            reply = await connection.command(f"HELO {self.helo_name}")
            if reply.code == 250:
                return {}
        raise self._fail(FailureKind.REJECTED, f"EHLO refused: {reply}", reply)

    async def _start_tls(
        self, connection: SmtpConnection, extensions: dict[str, list[str]]
    ) -> None:
        # Never go on in clear text when TLS was asked for: AUTH would expose the password.
        if "STARTTLS" not in extensions:
            raise self._fail(FailureKind.TLS, "server does not offer STARTTLS")
        reply = await connection.command("STARTTLS")
        if reply.code != 220:
            raise self._fail(FailureKind.TLS, f"STARTTLS refused: {reply}", reply)
        await self._handshake(connection)

    async def _authenticate(self, connection: SmtpConnection, offered: list[str] | None) -> None:
        credentials = self.spec.credentials
        assert credentials is not None
        mechanism = self._mechanism(offered)
        secrets = [credentials.password]
        initial = mechanism.initial_response(credentials)
        line, shown = f"AUTH {mechanism.name}", f"AUTH {mechanism.name}"
        if initial is not None:
            secrets.append(sasl.encode(initial))
            line, shown = f"{line} {secrets[-1]}", f"{shown} <redacted>"
        reply = await connection.command(line, shown_as=shown)
        step = 0
        while reply.code == 334:
            if step == _MAX_AUTH_STEPS:
                raise self._fail(FailureKind.PROTOCOL, "AUTH exchange does not end", reply)
            try:
                challenge = sasl.decode(reply.text)
            except binascii.Error:
                raise self._fail(FailureKind.PROTOCOL, "AUTH challenge is not base64") from None
            secrets.append(sasl.encode(mechanism.answer(challenge, step, credentials)))
            reply = await connection.command(secrets[-1], shown_as="<redacted>")
            step += 1
        if reply.code != 235:
            # A hostile server could echo what we sent: never let it reach the output.
            text = _redact(str(reply), secrets)
            raise self._fail(FailureKind.AUTH, f"authentication failed: {text}", reply)

    def _mechanism(self, offered: list[str] | None) -> sasl.Mechanism:
        credentials = self.spec.credentials
        assert credentials is not None
        if credentials.mechanism is not None:
            return sasl.SUPPORTED[credentials.mechanism.upper()]
        if not offered:
            raise self._fail(FailureKind.AUTH, "server offers no AUTH")
        encrypted = self.tls_info is not None
        mechanism = sasl.choose(offered, encrypted)
        if mechanism is None:
            raise self._fail(
                FailureKind.AUTH, f"no supported AUTH mechanism in {' '.join(offered)}"
            )
        return mechanism

    async def _send_message(self, connection: SmtpConnection, message: bytes) -> None:
        spec = self.spec.message
        assert spec is not None
        with self._step(Phase.MAIL):
            reply = await connection.command(f"MAIL FROM:<{spec.sender}>")
            if reply.code != 250:
                raise self._fail(
                    FailureKind.REJECTED, f"MAIL FROM <{spec.sender}> refused: {reply}", reply
                )
        with self._step(Phase.RCPT):
            for recipient in spec.recipients:
                reply = await connection.command(f"RCPT TO:<{recipient}>")
                if reply.code not in (250, 251):
                    raise self._fail(
                        FailureKind.REJECTED, f"RCPT TO <{recipient}> refused: {reply}", reply
                    )
        with self._step(Phase.DATA):
            reply = await connection.command("DATA")
            if reply.code != 354:
                raise self._fail(FailureKind.REJECTED, f"DATA refused: {reply}", reply)
            await connection.send_raw(message)
            reply = await connection.read_reply()
            if reply.code != 250:
                raise self._fail(FailureKind.REJECTED, f"message refused: {reply}", reply)


def _extensions(reply: Reply) -> dict[str, list[str]]:
    """EHLO keywords and their parameters; the first line is the greeting."""
    extensions: dict[str, list[str]] = {}
    for line in reply.lines[1:]:
        # Old servers announce "AUTH=LOGIN PLAIN" beside (or instead of) "AUTH LOGIN PLAIN".
        words = line.replace("=", " ", 1).split()
        if words:
            extensions[words[0].upper()] = words[1:]
    return extensions


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


@functools.lru_cache(maxsize=1)
def _local_fqdn() -> str:
    return socket.getfqdn()


async def _resolve_addresses(host: str, port: int) -> list[str]:
    """The host's addresses, in the resolver's order, each once.

    getaddrinfo runs in a daemon thread: a hung resolver must not hold the process at exit,
    as the event loop's executor threads would."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[list[str]] = loop.create_future()

    def settle(outcome: list[str] | OSError) -> None:
        if future.done():
            return
        if isinstance(outcome, OSError):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    def lookup() -> None:
        outcome: list[str] | OSError
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            outcome = list(dict.fromkeys(str(info[4][0]) for info in infos))
        except OSError as error:
            outcome = error
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=lookup, name="smtp-checks-resolve", daemon=True).start()
    return await future
