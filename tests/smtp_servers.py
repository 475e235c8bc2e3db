"""Real SMTP servers for tests and benchmarks, run in-process on free loopback ports.

Three pieces:

* :class:`Pki` -- a throw-away test PKI (``trustme`` CA plus certificate variants
  ``trusted``, ``wrong_host``, ``expired``, ``self_signed``) with the CA written to a
  PEM file a client can be told to trust.
* :class:`SmtpServer` -- a well-behaved but configurable server built on aiosmtpd's
  threaded ``Controller``: STARTTLS or implicit TLS, AUTH PLAIN/LOGIN/CRAM-MD5, delays,
  rejection replies, and thread-safe records of what happened.
* :class:`RawServer` -- a hand-written asyncio server playing one hostile scenario
  (silence, a byte a second, endless continuation lines, garbage...).

Names for "nothing there": :func:`refused_port` gives a loopback port nobody listens
on, and :data:`UNRESOLVABLE_HOST` (``nonexistent.invalid``) is a name that can never
resolve: the ``.invalid`` TLD is reserved for exactly that by RFC 6761 section 6.4.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hmac
import ipaddress
import itertools
import json
import logging
import secrets
import shutil
import socket
import ssl
import tempfile
import threading
import time
from base64 import b64decode
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, get_args

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import (
    MISSING,
    SMTP,
    AuthResult,
    Envelope,
    LoginPassword,
    Session,
    TLSSetupException,
    auth_mechanism,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = [
    "ALL_AUTH_MECHANISMS",
    "CERT_VARIANTS",
    "INJECTION_BANNER",
    "INJECTION_PAYLOAD",
    "INJECTION_REFUSAL",
    "INVALID_UTF8_BANNER",
    "LOOPBACK",
    "RAW_SCENARIOS",
    "TEST_PASSWORD",
    "TEST_USER",
    "UNRESOLVABLE_HOST",
    "AuthAttempt",
    "CertVariant",
    "Pki",
    "RawScenario",
    "RawServer",
    "ReceivedMessage",
    "ServerPool",
    "SessionRecord",
    "SmtpServer",
    "TlsMode",
    "refused_port",
]

LOOPBACK = "127.0.0.1"
UNRESOLVABLE_HOST = "nonexistent.invalid"
"""A host name that never resolves (``.invalid`` is reserved by RFC 6761)."""

TEST_USER = "monitor@example.com"
TEST_PASSWORD = "s3cret-pw"  # a test credential, known to every test

ALL_AUTH_MECHANISMS: tuple[str, ...] = ("PLAIN", "LOGIN", "CRAM-MD5")
# Offered only when asked for (`auth_mechanisms=("XOAUTH2",)`): the password is the token.
OAUTH_MECHANISMS: tuple[str, ...] = ("XOAUTH2",)
# What Google's and Microsoft's servers answer to a bad token, before their 535.
XOAUTH2_ERROR = {"status": "401", "schemes": "bearer", "scope": "https://mail.google.com/"}

CertVariant = Literal["trusted", "wrong_host", "expired", "self_signed"]
CERT_VARIANTS: tuple[CertVariant, ...] = get_args(CertVariant)

TlsMode = Literal["none", "starttls", "ssl"]

_STOP_TIMEOUT = 5.0

_log = logging.getLogger(__name__)


class _DropLoginDataWarning(logging.Filter):
    """aiosmtpd 1.4 warns "Session.login_data is deprecated" on every successful AUTH,
    from its own smtp_AUTH. Nothing to fix on our side; drop the noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


_aiosmtpd_log = logging.getLogger("mail.log")
if not any(isinstance(f, _DropLoginDataWarning) for f in _aiosmtpd_log.filters):
    _aiosmtpd_log.addFilter(_DropLoginDataWarning())


# --------------------------------------------------------------------------- PKI


@dataclass(frozen=True)
class _CertFiles:
    cert_pem: Path
    key_pem: Path


class Pki:
    """A test CA and server certificates for ``localhost`` / ``127.0.0.1``.

    Files live in a private temporary directory until :meth:`cleanup`.

    Attributes:
        ca: the ``trustme.CA``.
        directory: the temporary directory holding every PEM file.
        ca_pem_path: the CA certificate (PEM) a client should trust.
        cert_paths: per variant, the server certificate chain PEM file.
        key_paths: per variant, the server private key PEM file.
    """

    def __init__(self) -> None:
        self.ca = trustme.CA()
        self.directory = Path(tempfile.mkdtemp(prefix="smtp-test-pki-"))
        self.ca_pem_path = self.directory / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_pem_path))
        now = datetime.datetime.now(datetime.UTC)
        leaves = {
            "trusted": self.ca.issue_cert("localhost", LOOPBACK),
            "wrong_host": self.ca.issue_cert("other.example"),
            "expired": self.ca.issue_cert(
                "localhost",
                LOOPBACK,
                not_before=now - datetime.timedelta(days=30),
                not_after=now - datetime.timedelta(days=1),
            ),
        }
        self._files: dict[CertVariant, _CertFiles] = {}
        for name, leaf in leaves.items():
            files = _CertFiles(self.directory / f"{name}.crt", self.directory / f"{name}.key")
            # Chain (leaf first) in one file, key in another: the shape servers expect.
            files.cert_pem.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
            leaf.private_key_pem.write_to_path(str(files.key_pem))
            self._files[name] = files  # type: ignore[index]
        self._files["self_signed"] = _write_self_signed(self.directory)
        self.cert_paths: dict[CertVariant, Path] = {k: v.cert_pem for k, v in self._files.items()}
        self.key_paths: dict[CertVariant, Path] = {k: v.key_pem for k, v in self._files.items()}

    @property
    def ca_pem(self) -> bytes:
        """The CA certificate, PEM bytes."""
        return self.ca_pem_path.read_bytes()

    def server_context(self, variant: CertVariant = "trusted") -> ssl.SSLContext:
        """A fresh server-side context presenting ``variant`` (no client certificates)."""
        files = self._files[variant]
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(files.cert_pem, files.key_pem)
        return ctx

    def client_context(self, *, check_hostname: bool = True) -> ssl.SSLContext:
        """A client context trusting only the test CA (verification on)."""
        ctx = ssl.create_default_context(cafile=str(self.ca_pem_path))
        ctx.check_hostname = check_hostname
        return ctx

    def cleanup(self) -> None:
        """Delete the temporary directory."""
        shutil.rmtree(self.directory, ignore_errors=True)


def _write_self_signed(directory: Path) -> _CertFiles:
    """A certificate for localhost/127.0.0.1 signed by its own key, not by the test CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    files = _CertFiles(directory / "self_signed.crt", directory / "self_signed.key")
    files.cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ReceivedMessage:
    """A message that went through DATA (accepted or refused by ``data_reply``)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    accepted: bool
    tls: bool
    authenticated_as: str | None


@dataclass(frozen=True)
class AuthAttempt:
    """One AUTH exchange that reached a verdict. Never holds the password."""

    mechanism: str
    success: bool
    username: str | None


@dataclass
class SessionRecord:
    """One SMTP session (a TCP connection that got as far as the SMTP layer)."""

    id: int
    peer: tuple[str, int] | None
    started: float
    ended: float | None = None
    tls: bool = False
    """Implicit TLS, or STARTTLS completed."""
    commands: list[str] = field(default_factory=list)
    """Command verbs only (``EHLO``, ``AUTH``...): never arguments, so never secrets."""
    authenticated_as: str | None = None


def _copy_session(rec: SessionRecord) -> SessionRecord:
    return replace(rec, commands=list(rec.commands))


@dataclass(frozen=True)
class _Config:
    tls: TlsMode
    username: str | None
    password: str | None
    banner_delay: float
    command_delay: float
    hold_seconds: float
    banner_reply: str | None
    ehlo_reply: str | None
    helo_accepted: bool
    starttls_reply: str | None
    mail_reply: str | None
    rcpt_reply: str | None
    data_reply: str | None


class _State:
    """Configuration plus everything observed; shared by the loop thread and callers."""

    def __init__(self, config: _Config) -> None:
        self.config = config
        self.cond = threading.Condition()
        self.connections = 0
        self.sessions: list[SessionRecord] = []
        self.active = 0
        self.max_active = 0
        self.messages: list[ReceivedMessage] = []
        self.auth_attempts: list[AuthAttempt] = []
        self.live: set[_RecordingSMTP] = set()

    def count_connection(self) -> None:
        with self.cond:
            self.connections += 1

    def open_session(self, peer: tuple[str, int] | None, tls: bool) -> SessionRecord:
        with self.cond:
            rec = SessionRecord(id=len(self.sessions) + 1, peer=peer, started=time.time(), tls=tls)
            self.sessions.append(rec)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.cond.notify_all()
            return rec

    def close_session(self, rec: SessionRecord) -> None:
        with self.cond:
            rec.ended = time.time()
            self.active -= 1
            self.cond.notify_all()

    def record_auth(self, attempt: AuthAttempt) -> None:
        with self.cond:
            self.auth_attempts.append(attempt)
            self.cond.notify_all()

    def record_message(self, message: ReceivedMessage) -> None:
        with self.cond:
            self.messages.append(message)
            self.cond.notify_all()

    def update(self, rec: SessionRecord, **changes: Any) -> None:
        with self.cond:
            for name, value in changes.items():
                setattr(rec, name, value)

    def record_command(self, rec: SessionRecord, verb: str) -> None:
        with self.cond:
            rec.commands.append(verb)


# --------------------------------------------------------------------------- aiosmtpd glue


class _RecordingSMTP(SMTP):
    """aiosmtpd's SMTP with counting, delays, banner rejection and CRAM-MD5."""

    def __init__(self, handler: _Handler, state: _State, **kwargs: Any) -> None:
        self._state = state
        self.record: SessionRecord | None = None
        super().__init__(handler, **kwargs)
        # aiosmtpd looks commands up in this dict; wrapping it gives per-command hooks
        # without copying any of its command code.
        self._smtp_methods = {
            verb: self._instrument(verb, method) for verb, method in self._smtp_methods.items()
        }

    def _instrument(
        self, verb: str, method: Callable[[str | None], Awaitable[None]]
    ) -> Callable[[str | None], Awaitable[None]]:
        async def run(arg: str | None) -> None:
            if self.record is not None:
                self._state.record_command(self.record, verb)
            if self._state.config.command_delay > 0:
                await asyncio.sleep(self._state.config.command_delay)
            await method(arg)

        return run

    # -- session accounting
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.record is None
        super().connection_made(transport)
        if first:
            peer = transport.get_extra_info("peername")
            self.record = self._state.open_session(
                tuple(peer[:2]) if peer else None, self._state.config.tls == "ssl"
            )
            self._state.live.add(self)
        elif self.record is not None:  # second call: STARTTLS handshake completed
            self._state.update(self.record, tls=True)

    def connection_lost(self, error: Exception | None) -> None:
        self._state.live.discard(self)
        rec, self.record = self.record, None
        if rec is not None and rec.ended is None:
            self._state.close_session(rec)
        super().connection_lost(error)

    def abort(self) -> None:
        """Drop the connection now (used on server stop)."""
        transport = self._original_transport or self.transport
        if transport is not None:
            transport.abort()  # type: ignore[attr-defined]

    # -- banner delay / rejection
    async def _handle_client(self) -> None:
        cfg = self._state.config
        if cfg.banner_delay > 0:
            await asyncio.sleep(cfg.banner_delay)
        if cfg.banner_reply is None:
            await super()._handle_client()
            return
        # RFC 5321 3.1: after a 554 greeting, wait for QUIT and refuse everything else.
        await self.push(cfg.banner_reply)
        while self.transport is not None:
            line = await self._reader.readline()
            if not line:
                break
            if line.strip().upper() == b"QUIT":
                await self.push("221 2.0.0 Bye")
                break
            await self.push("503 5.5.1 Error: no valid greeting")
        if self.transport is not None:
            self.transport.close()

    # -- hold the session open for benchmarks
    async def smtp_QUIT(self, arg: str) -> None:
        hold = self._state.config.hold_seconds
        if hold > 0 and self.record is not None:
            remaining = self.record.started + hold - time.time()
            if remaining > 0:
                await asyncio.sleep(remaining)
        await super().smtp_QUIT(arg)

    async def smtp_STARTTLS(self, arg: str) -> None:
        reply = self._state.config.starttls_reply
        if reply is not None and self.tls_context is not None:
            await self.push(reply)
            return
        await super().smtp_STARTTLS(arg)

    # -- XOAUTH2 (Google's and Microsoft's): a bearer token in the initial response; a bad
    # one gets a 334 with a base64 JSON error, then, after the client's empty line, a 535.
    @auth_mechanism("XOAUTH2")
    async def auth_XOAUTH2(self, _server: SMTP, args: list[str]) -> AuthResult:
        if len(args) != 2:
            await self.push("501 5.5.2 XOAUTH2 needs an initial response")
            return AuthResult(success=False, handled=True)
        fields = dict(
            part.split("=", 1)
            for part in b64decode(args[1]).decode("utf-8", "replace").split("\x01")
            if "=" in part
        )
        username, token = fields.get("user"), fields.get("auth", "").removeprefix("Bearer ")
        cfg = self._state.config
        ok = username == cfg.username and token == cfg.password and cfg.password is not None
        self._state.record_auth(AuthAttempt("XOAUTH2", ok, username))
        if ok:
            if self.record is not None:
                self._state.update(self.record, authenticated_as=username)
            return AuthResult(success=True, handled=False, auth_data=username)
        await self.challenge_auth(json.dumps(XOAUTH2_ERROR).encode())
        return AuthResult(success=False, handled=False)

    # -- CRAM-MD5 (RFC 2195); aiosmtpd has no built-in for it
    @auth_mechanism("CRAM-MD5")
    async def auth_CRAM_MD5(self, _server: SMTP, args: list[str]) -> AuthResult:
        if len(args) > 1:
            await self.push("501 5.5.4 CRAM-MD5 takes no initial response")
            return AuthResult(success=False, handled=True)
        challenge = f"<{secrets.randbelow(10**12)}.{int(time.time())}@{self.hostname}>"
        response = await self.challenge_auth(challenge)
        if response is MISSING:  # '*' or bad base64: challenge_auth already replied
            return AuthResult(success=False, handled=True)
        assert isinstance(response, bytes)
        user_b, _, digest = response.rpartition(b" ")
        username = user_b.decode("utf-8", "replace") if user_b else None
        cfg = self._state.config
        ok = False
        if cfg.username is not None and cfg.password is not None:
            expected = hmac.new(cfg.password.encode(), challenge.encode(), "md5").hexdigest()
            ok = username == cfg.username and hmac.compare_digest(digest.lower(), expected.encode())
        self._state.record_auth(AuthAttempt("CRAM-MD5", ok, username))
        if ok and self.record is not None:
            self._state.update(self.record, authenticated_as=username)
        return AuthResult(success=ok, handled=False, auth_data=username)


class _Handler:
    """aiosmtpd handler hooks: EHLO filtering, rejections, message capture."""

    def __init__(self, state: _State) -> None:
        self._state = state

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        """``authenticator`` for aiosmtpd's built-in PLAIN and LOGIN."""
        cfg = self._state.config
        assert isinstance(data, LoginPassword)
        username = data.login.decode("utf-8", "replace")
        ok = (
            cfg.username is not None
            and cfg.password is not None
            and hmac.compare_digest(data.login, cfg.username.encode())
            and hmac.compare_digest(data.password, cfg.password.encode())
        )
        self._state.record_auth(AuthAttempt(mechanism, ok, username))
        rec = getattr(server, "record", None)
        if ok and isinstance(rec, SessionRecord):
            self._state.update(rec, authenticated_as=username)
        return AuthResult(success=ok, handled=False, auth_data=username)

    async def handle_exception(self, error: Exception) -> str:
        """Failed STARTTLS handshakes are what the bad-certificate tests provoke: no
        traceback for those; anything else is a real bug and is logged as one."""
        if isinstance(error, TLSSetupException):
            _log.debug("STARTTLS handshake failed: %r", error.__cause__)
        else:
            _log.error("SMTP session exception", exc_info=error)
        return f"500 Error: ({type(error).__name__}) {error}"

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        if self._state.config.ehlo_reply is not None:
            return [self._state.config.ehlo_reply]
        session.host_name = hostname  # the 5-argument hook must do this itself
        # With every mechanism excluded aiosmtpd still prints a bare "250-AUTH ".
        return [r for r in responses if r.rstrip() != "250-AUTH"]

    async def handle_HELO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str
    ) -> str:
        config = self._state.config
        if config.ehlo_reply is not None and not config.helo_accepted:
            return config.ehlo_reply
        session.host_name = hostname
        return f"250 {server.hostname}"

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self._state.config.mail_reply is not None:
            return self._state.config.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if self._state.config.rcpt_reply is not None:
            return self._state.config.rcpt_reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = self._state.config.data_reply
        rec = getattr(server, "record", None)
        self._state.record_message(
            ReceivedMessage(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                content=envelope.original_content or b"",
                accepted=reply is None or reply.startswith("2"),
                tls=bool(rec.tls) if isinstance(rec, SessionRecord) else False,
                authenticated_as=rec.authenticated_as if isinstance(rec, SessionRecord) else None,
            )
        )
        return reply if reply is not None else "250 2.0.0 OK: queued"


def _quiet_tls_errors(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Implicit-TLS handshakes refused by a verifying client are expected: log at debug."""
    if isinstance(context.get("exception"), ssl.SSLError | ConnectionError):
        _log.debug("%s: %r", context.get("message"), context.get("exception"))
        return
    loop.default_exception_handler(context)


class _Controller(Controller):
    """Controller bound to port 0, with no self-connection readiness check.

    aiosmtpd's ``start()`` normally connects to the server itself to force the lazy
    ``factory()`` call. That connection would count as a session, would stall on a
    banner delay, would read a rejection banner, and fails outright with port 0
    (``self.port`` stays 0). Instead we read the bound port and invoke the factory
    once inside the loop thread, which is all ``start()`` then waits for.
    """

    def __init__(self, state: _State, *, backlog: int, **kwargs: Any) -> None:
        self._state = state
        self._backlog = backlog
        super().__init__(**kwargs)
        self.loop.set_exception_handler(_quiet_tls_errors)

    def factory(self) -> SMTP:
        return _RecordingSMTP(self.handler, self._state, loop=self.loop, **self.SMTP_kwargs)

    def _accept(self) -> Any:
        self._state.count_connection()
        return self._factory_invoker()

    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:
        return self.loop.create_server(
            self._accept,
            host=self.hostname,
            port=self.port,
            ssl=self.ssl_context,
            backlog=self._backlog,
        )

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        self.loop.call_soon_threadsafe(self._factory_invoker)

    async def _shutdown(self) -> None:
        assert self.server is not None
        self.server.close()
        for proto in list(self._state.live):
            proto.abort()
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self, no_assert: bool = False) -> None:
        if self._thread is not None and self.loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop)
            with contextlib.suppress(Exception):
                fut.result(_STOP_TIMEOUT)
        super().stop(no_assert=no_assert)


# --------------------------------------------------------------------------- SmtpServer


class _LoopbackServer:
    """What both kinds of test server share: a loopback address and `with` support."""

    host: str
    port: int

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class SmtpServer(_LoopbackServer):
    """A real SMTP server on ``127.0.0.1:<free port>`` in a background thread.

    ``with SmtpServer(...) as srv:`` starts it and stops it (freeing the port and
    dropping open sessions). Connect to ``srv.host``/``srv.port``.

    Args:
        tls: ``"none"``; ``"starttls"`` (offers STARTTLS with ``tls_context``); or
            ``"ssl"`` (implicit TLS from the first byte with ``tls_context``).
        tls_context: server context, e.g. ``pki.server_context("trusted")``. Required
            for ``starttls``/``ssl``.
        require_starttls: refuse (530) everything but EHLO/NOOP/QUIT/STARTTLS before TLS.
        username, password: the one account accepted. Without them AUTH is not offered.
        auth_mechanisms: subset of ``ALL_AUTH_MECHANISMS`` to offer.
        auth_require_tls: only offer/accept AUTH once TLS is up (538 otherwise). Set
            False to test AUTH over plain text. Implicit TLS always counts as TLS.
        auth_required: refuse MAIL/RCPT/DATA (530) until authenticated.
        banner_delay: seconds to wait before the greeting.
        command_delay: seconds to wait before handling each recognised command.
        hold_seconds: keep every session open at least this long after connecting:
            the reply to QUIT is held back until then (benchmark "slow server").
        banner_reply: a full reply line such as ``"554 5.3.2 Service unavailable"``
            sent instead of the 220 greeting; afterwards only QUIT is answered (221).
        ehlo_reply: reply to EHLO and HELO instead of accepting them
            (e.g. ``"550 5.7.1 HELO rejected"``).
        helo_accepted: with ``ehlo_reply``, still accept HELO: an old server without ESMTP.
        starttls_reply: reply to STARTTLS instead of starting TLS (e.g. ``"454 4.7.0
            TLS not available"``) while still advertising it.
        mail_reply, rcpt_reply: reply to MAIL FROM / RCPT TO instead of ``250``.
        data_reply: reply after the message data instead of ``250`` (the message is
            still recorded, with ``accepted=False`` unless the reply starts with 2).
        hostname: name in the greeting and EHLO reply.
        idle_timeout: server-side inactivity timeout per session, seconds.
        backlog: listen backlog (raise it for benchmarks with many simultaneous
            connects).
    """

    def __init__(
        self,
        *,
        tls: TlsMode = "none",
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        auth_mechanisms: Sequence[str] = ALL_AUTH_MECHANISMS,
        auth_require_tls: bool = True,
        auth_required: bool = False,
        banner_delay: float = 0.0,
        command_delay: float = 0.0,
        hold_seconds: float = 0.0,
        banner_reply: str | None = None,
        ehlo_reply: str | None = None,
        helo_accepted: bool = False,
        starttls_reply: str | None = None,
        mail_reply: str | None = None,
        rcpt_reply: str | None = None,
        data_reply: str | None = None,
        hostname: str = "mx.example.test",
        idle_timeout: float = 30.0,
        backlog: int = 1024,
    ) -> None:
        if tls not in get_args(TlsMode):
            raise ValueError(f"unknown tls mode {tls!r}")
        if tls != "none" and tls_context is None:
            raise ValueError(f"tls={tls!r} needs a tls_context")
        unknown = set(auth_mechanisms) - set(ALL_AUTH_MECHANISMS + OAUTH_MECHANISMS)
        if unknown:
            raise ValueError(f"unknown AUTH mechanisms {sorted(unknown)}")
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        self.host = LOOPBACK
        self.port = 0
        self.hostname = hostname
        self.tls = tls
        self._state = _State(
            _Config(
                tls=tls,
                username=username,
                password=password,
                banner_delay=banner_delay,
                command_delay=command_delay,
                hold_seconds=hold_seconds,
                banner_reply=banner_reply,
                ehlo_reply=ehlo_reply,
                helo_accepted=helo_accepted,
                starttls_reply=starttls_reply,
                mail_reply=mail_reply,
                rcpt_reply=rcpt_reply,
                data_reply=data_reply,
            )
        )
        offered = set(auth_mechanisms) if username is not None else set()
        handler = _Handler(self._state)
        self._controller = _Controller(
            self._state,
            backlog=backlog,
            handler=handler,
            hostname=LOOPBACK,
            port=0,
            ssl_context=tls_context if tls == "ssl" else None,
            server_hostname=hostname,
            tls_context=tls_context if tls == "starttls" else None,
            require_starttls=require_starttls and tls == "starttls",
            # aiosmtpd only knows STARTTLS: on an implicit-TLS socket it would refuse
            # AUTH with 538, so the requirement is already met there.
            auth_require_tls=auth_require_tls and tls != "ssl",
            auth_required=auth_required,
            auth_exclude_mechanism=set(ALL_AUTH_MECHANISMS + OAUTH_MECHANISMS) - offered,
            authenticator=handler.authenticate,
            timeout=idle_timeout,
        )
        self._started = False

    # -- lifecycle
    def start(self) -> Self:
        """Start serving; returns self. Raises if the server cannot start."""
        if self._started:
            return self
        try:
            self._controller.start()
        except BaseException:
            self._controller.stop(no_assert=True)
            raise
        self.port = self._controller.port
        self._started = True
        return self

    def stop(self) -> None:
        """Stop serving, drop open sessions and free the port. Idempotent."""
        if self._started:
            self._started = False
            self._controller.stop()

    # -- observations (copies, safe to read from any thread)
    @property
    def connections(self) -> int:
        """TCP connections accepted (including ones whose TLS handshake failed)."""
        with self._state.cond:
            return self._state.connections

    @property
    def session_count(self) -> int:
        """SMTP sessions started (TLS handshake done for implicit TLS)."""
        with self._state.cond:
            return len(self._state.sessions)

    @property
    def active_sessions(self) -> int:
        with self._state.cond:
            return self._state.active

    @property
    def max_concurrent_sessions(self) -> int:
        with self._state.cond:
            return self._state.max_active

    @property
    def sessions(self) -> list[SessionRecord]:
        with self._state.cond:
            return [_copy_session(s) for s in self._state.sessions]

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._state.cond:
            return list(self._state.messages)

    @property
    def auth_attempts(self) -> list[AuthAttempt]:
        with self._state.cond:
            return list(self._state.auth_attempts)

    def wait_idle(self, timeout: float = 2.0) -> bool:
        """Wait until no session is open (server side); False on timeout."""
        with self._state.cond:
            return self._state.cond.wait_for(lambda: self._state.active == 0, timeout)

    def wait_for_sessions(self, count: int, timeout: float = 2.0) -> bool:
        """Wait until at least ``count`` sessions have started; False on timeout."""
        with self._state.cond:
            return self._state.cond.wait_for(lambda: len(self._state.sessions) >= count, timeout)

    def reset_stats(self) -> None:
        """Forget recorded sessions, messages and AUTH attempts (not open sessions)."""
        with self._state.cond:
            self._state.connections = 0
            self._state.sessions = []
            self._state.max_active = self._state.active
            self._state.messages = []
            self._state.auth_attempts = []


# --------------------------------------------------------------------------- RawServer

RawScenario = Literal[
    "silent",
    "drip",
    "endless_continuation",
    "close_after_banner",
    "close_mid_session",
    "huge_line",
    "invalid_utf8_banner",
    "injection_banner",
    "injection_refusal",
    "escape_refusal",
    "garbage",
]
RAW_SCENARIOS: tuple[RawScenario, ...] = get_args(RawScenario)

INJECTION_PAYLOAD = "[123] PROCESS_SERVICE_CHECK_RESULT;victim;svc;0;owned"
"""The Centreon external command the ``injection_banner`` scenario tries to smuggle."""

_RAW_HOST = "mx.raw.test"
INVALID_UTF8_BANNER = b"220 \xff\xfe\xc3( " + _RAW_HOST.encode() + b" ESMTP\r\n"
INJECTION_BANNER = (
    f"220-{_RAW_HOST} ESMTP | 'time'=0.001s;;;;\r\n"
    f"220-{INJECTION_PAYLOAD}\r\n"
    f"220 ready; |injected=1;2;3\r\n"
).encode()
# The same smuggling, in a refusal: the one place server text reaches Centreon's output.
INJECTION_REFUSAL = (
    f"554-{_RAW_HOST} go away | 'time'=0.001s;;;;\r\n"
    f"554-{INJECTION_PAYLOAD}\r\n"
    f"554 \x1b[31m; |injected=1;2;3\r\n"
).encode()
# Backslash escapes a monitoring engine would unescape: the text must be shown as sent.
ESCAPE_REFUSAL_TEXT = r"554 evil\nFAKE LONG OUTPUT C:\dir\\share \t"
_DRIP_PATTERN = f"220-{_RAW_HOST} slow banner\r\n".encode()


async def _read_to_eof(reader: asyncio.StreamReader) -> None:
    """Consume and discard input until the peer closes."""
    with contextlib.suppress(ConnectionError):
        while await reader.read(65536):
            pass


async def _until_disconnect(
    reader: asyncio.StreamReader, producer: Callable[[], Awaitable[None]]
) -> None:
    """Run ``producer`` until it ends or the client disconnects, whichever is first."""
    tasks = {
        asyncio.ensure_future(producer()),
        asyncio.ensure_future(_read_to_eof(reader)),
    }
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _write(writer: asyncio.StreamWriter, data: bytes) -> None:
    if writer.is_closing():
        raise ConnectionResetError("client went away")
    writer.write(data)
    await writer.drain()


async def _smtp_dialogue(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    banner: bytes,
    *,
    close_on: frozenset[bytes] = frozenset(),
) -> None:
    """A minimal correct SMTP responder after a given (possibly odd) banner.

    AUTH PLAIN/LOGIN accept any credentials; STARTTLS is not offered. Returns (so
    the caller closes the connection) on QUIT, EOF, or a verb in ``close_on``.
    """
    await _write(writer, banner)
    while True:
        line = await reader.readline()
        if not line:
            return
        parts = line.strip().split(maxsplit=1)
        verb = parts[0].upper() if parts else b""
        arg = parts[1] if len(parts) > 1 else b""
        if verb in close_on:
            return
        if verb == b"EHLO":
            reply = (
                f"250-{_RAW_HOST}\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                "250-AUTH PLAIN LOGIN\r\n250 HELP\r\n"
            ).encode()
        elif verb == b"HELO":
            reply = f"250 {_RAW_HOST}\r\n".encode()
        elif verb == b"MAIL":
            reply = b"250 2.1.0 OK\r\n"
        elif verb == b"RCPT":
            reply = b"250 2.1.5 OK\r\n"
        elif verb == b"DATA":
            await _write(writer, b"354 End data with <CR><LF>.<CR><LF>\r\n")
            while (data_line := await reader.readline()) not in (b".\r\n", b".\n", b""):
                pass
            if not data_line:
                return
            reply = b"250 2.0.0 OK: queued\r\n"
        elif verb in (b"RSET", b"NOOP"):
            reply = b"250 2.0.0 OK\r\n"
        elif verb == b"QUIT":
            await _write(writer, b"221 2.0.0 Bye\r\n")
            return
        elif verb == b"AUTH":
            reply = await _raw_auth(reader, writer, arg)
        elif verb == b"STARTTLS":
            reply = b"454 4.7.0 TLS not available\r\n"
        else:
            reply = b"502 5.5.2 Error: command not recognized\r\n"
        await _write(writer, reply)


async def _raw_auth(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, arg: bytes
) -> bytes:
    """AUTH PLAIN/LOGIN that accepts any well-formed credentials."""
    mech, _, initial = arg.partition(b" ")
    mech = mech.upper()
    if mech == b"PLAIN":
        prompts = [] if initial else [b"334 \r\n"]
    elif mech == b"LOGIN":
        prompts = ([] if initial else [b"334 VXNlcm5hbWU6\r\n"]) + [b"334 UGFzc3dvcmQ6\r\n"]
    else:
        return b"504 5.5.4 Unrecognized authentication type\r\n"
    answers = [initial] if initial else []
    for prompt in prompts:
        await _write(writer, prompt)
        answers.append((await reader.readline()).strip())
    for answer in answers:
        if answer == b"*":
            return b"501 5.7.0 Auth aborted\r\n"
        try:
            b64decode(answer, validate=True)
        except ValueError:
            return b"501 5.5.2 Can't decode base64\r\n"
    return b"235 2.7.0 Authentication successful\r\n"


class RawServer(_LoopbackServer):
    """A hand-written asyncio server on ``127.0.0.1:<free port>`` playing one scenario.

    Scenarios (see :data:`RAW_SCENARIOS`):

    * ``silent`` -- accepts, never sends anything.
    * ``drip`` -- sends ``220-... slow banner`` continuation lines one byte every
      ``drip_interval`` seconds, forever (a reply that never completes).
    * ``endless_continuation`` -- ``220-`` continuation lines as fast as the client
      reads, forever.
    * ``close_after_banner`` -- a normal 220 banner, then closes on the first command.
    * ``close_mid_session`` -- normal banner and EHLO, closes on MAIL FROM.
    * ``huge_line`` -- ``220 `` and ``huge_line_size`` bytes without a newline, then
      keeps the socket open.
    * ``invalid_utf8_banner`` -- banner ``220 \\xff\\xfe\\xc3( ...``, then a normal session.
    * ``injection_banner`` -- a multi-line 220 banner carrying :data:`INJECTION_PAYLOAD`
      on its own line plus ``|`` and ``;``, then a normal session.
    * ``injection_refusal`` -- the same payload in a multi-line 554 banner (a refusal, so
      the text reaches the output), then only QUIT.
    * ``escape_refusal`` -- a 554 banner of :data:`ESCAPE_REFUSAL_TEXT`: backslash
      escapes an engine would unescape (``\\n`` would start a long output), then only QUIT.
    * ``garbage`` -- ``HELLO WORLD`` on connect and in reply to every line.

    The "normal session" accepts any AUTH PLAIN/LOGIN credentials. Writers stop when
    the client disconnects; :meth:`stop` drops every connection.
    """

    def __init__(
        self,
        scenario: RawScenario,
        *,
        drip_interval: float = 1.0,
        huge_line_size: int = 1024 * 1024,
    ) -> None:
        if scenario not in RAW_SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}")
        self.scenario = scenario
        self.host = LOOPBACK
        self.port = 0
        self.drip_interval = drip_interval
        self.huge_line_size = huge_line_size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = threading.Lock()
        self._connections = 0
        self._bytes_sent = 0

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        with self._lock:
            return self._connections

    @property
    def open_connections(self) -> int:
        """Connections whose scenario is still running."""
        return len(self._tasks)

    # -- lifecycle
    def start(self) -> Self:
        """Bind, start the loop thread; returns self."""
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._serve, LOOPBACK, 0, backlog=1024)
            )
        except BaseException:
            loop.close()
            raise
        self.port = self._server.sockets[0].getsockname()[1]
        self._loop = loop
        self._thread = threading.Thread(
            target=loop.run_forever, name=f"raw-smtp-{self.scenario}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listener and every connection, stop the thread. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        with contextlib.suppress(Exception):
            fut.result(_STOP_TIMEOUT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_STOP_TIMEOUT)
        if not thread.is_alive():
            loop.close()
        self._loop = self._thread = self._server = None

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()

    # -- scenarios
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        with self._lock:
            self._connections += 1
        try:
            await getattr(self, f"_scenario_{self.scenario}")(reader, writer)
        except (ConnectionError, ValueError, asyncio.IncompleteReadError):
            pass  # client vanished or sent an over-long line: just hang up
        except asyncio.CancelledError:
            # stop(). Not re-raised: Python 3.11's start_server callback calls
            # task.exception() on the finished task and logs a cancelled one as an error.
            pass
        finally:
            self._tasks.discard(task)
            writer.transport.abort()

    async def _scenario_silent(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await _read_to_eof(reader)

    async def _scenario_drip(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        async def drip() -> None:
            for byte in itertools.cycle(_DRIP_PATTERN):
                await _write(writer, bytes([byte]))
                await asyncio.sleep(self.drip_interval)

        await _until_disconnect(reader, drip)

    async def _scenario_endless_continuation(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        async def flood() -> None:
            for n in itertools.count():
                chunk = b"".join(
                    f"220-{_RAW_HOST} continuation line {n * 100 + i}\r\n".encode()
                    for i in range(100)
                )
                await _write(writer, chunk)
                # drain() does not yield while the socket keeps up: yield explicitly so
                # the loop can notice a disconnect or a stop().
                await asyncio.sleep(0.001)

        await _until_disconnect(reader, flood)

    async def _scenario_close_after_banner(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await _write(writer, f"220 {_RAW_HOST} ESMTP\r\n".encode())
        await reader.readline()
        writer.close()

    async def _scenario_close_mid_session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        banner = f"220 {_RAW_HOST} ESMTP\r\n".encode()
        await _smtp_dialogue(reader, writer, banner, close_on=frozenset({b"MAIL"}))
        writer.close()

    async def _scenario_huge_line(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        async def huge() -> None:
            await _write(writer, b"220 " + b"A" * self.huge_line_size)
            await asyncio.Event().wait()  # keep the socket open

        await _until_disconnect(reader, huge)

    async def _scenario_invalid_utf8_banner(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await _smtp_dialogue(reader, writer, INVALID_UTF8_BANNER)

    async def _scenario_injection_banner(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await _smtp_dialogue(reader, writer, INJECTION_BANNER)

    async def _scenario_escape_refusal(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await self._refuse(reader, writer, ESCAPE_REFUSAL_TEXT.encode() + b"\r\n")

    async def _scenario_injection_refusal(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await self._refuse(reader, writer, INJECTION_REFUSAL)

    async def _refuse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, banner: bytes
    ) -> None:
        await _write(writer, banner)
        while line := await reader.readline():
            if line.upper().startswith(b"QUIT"):
                await _write(writer, b"221 bye\r\n")
                return
            await _write(writer, b"503 go away\r\n")

    async def _scenario_garbage(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await _write(writer, b"HELLO WORLD\r\n")
        while await reader.readline():
            await _write(writer, b"HELLO WORLD\r\n")


# --------------------------------------------------------------------------- helpers


def refused_port() -> int:
    """A loopback TCP port with nothing listening (bound, then released).

    Connecting to ``(LOOPBACK, refused_port())`` gives "connection refused". For a
    name that never resolves use :data:`UNRESOLVABLE_HOST` (``nonexistent.invalid``,
    RFC 6761).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
    return port


class ServerPool:
    """Starts servers on demand and stops them all on :meth:`close` (fixture helper)."""

    def __init__(self) -> None:
        self._servers: list[SmtpServer | RawServer] = []

    def smtp(self, **kwargs: Any) -> SmtpServer:
        """Start an :class:`SmtpServer` with these keyword arguments."""
        server = SmtpServer(**kwargs).start()
        self._servers.append(server)
        return server

    def raw(self, scenario: RawScenario, **kwargs: Any) -> RawServer:
        """Start a :class:`RawServer` playing ``scenario``."""
        server = RawServer(scenario, **kwargs).start()
        self._servers.append(server)
        return server

    def __iter__(self) -> Iterator[SmtpServer | RawServer]:
        return iter(list(self._servers))

    def close(self) -> None:
        while self._servers:
            self._servers.pop().stop()
