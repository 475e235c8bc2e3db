"""Run an SMTP session (shared/probe/dialogue.py) over a plain socket: the driver of the
one-shot `smtp-checks check`, which must start fast and so imports no asyncio.

Every wait (connect, each read and write, each step of a TLS handshake) is a `select` bounded
by what is left of the one deadline, on a non-blocking socket, so the deadline holds whatever
the server does (silence, a byte a second, a TLS handshake fed byte by byte). Never raises for
anything the server does.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import struct
import sys
import threading
from time import monotonic, perf_counter
from typing import TYPE_CHECKING

from smtp_checks.shared.errors import SmtpChecksError
from smtp_checks.shared.probe.dialogue import Close, Receive, Send, SmtpSession, StartTls
from smtp_checks.shared.probe.failures import FailureKind
from smtp_checks.shared.probe.result import ProbeResult
from smtp_checks.shared.probe.spec import ProbeSpec
from smtp_checks.shared.probe.wire import (
    Addresses,
    bind_failure,
    connect_failure,
    family_of,
    literal_addresses,
    local_fqdn,
    look_up,
    naming_addresses,
    transfer_failure,
    wanted_family,
)

if TYPE_CHECKING:
    import ssl

_READ_SIZE = 65536


class _DeadlinePassed(SmtpChecksError):
    pass


def run_probe(spec: ProbeSpec) -> ProbeResult:
    """Run one session as `spec` says, within `spec.timeout`."""
    message = None
    if spec.mode.sends_message and spec.message is not None:
        from smtp_checks.shared.probe.message import build_message  # noqa: PLC0415 (slow import)

        message = build_message(spec.message, spec.helo_name or local_fqdn())
    helo_name = spec.helo_name or local_fqdn()
    # Everything above happens before the clock starts: `time` is the server's time.
    deadline = monotonic() + spec.timeout
    session = SmtpSession(spec, helo_name=helo_name, message=message, started_at=perf_counter())
    connection: _Connection | None = None
    try:
        connection = _connect(session, spec, deadline)
        if connection is not None:
            connection.drive()
    except _DeadlinePassed:
        session.timed_out(perf_counter())
    finally:
        if connection is not None:
            connection.close()
    return session.result()


def _connect(session: SmtpSession, spec: ProbeSpec, deadline: float) -> _Connection | None:
    family = wanted_family(spec.ip, spec.source_address)
    addresses = _addresses(spec.host, spec.port, deadline, family)
    if isinstance(addresses, str):
        session.failed(FailureKind.DNS, addresses, perf_counter())
        return None
    failure = (FailureKind.NETWORK, "no address to connect to")
    tried: list[str] = []
    for address in addresses:  # the next one on failure, within the same deadline
        tried.append(address)
        session.trying(address)
        sock = socket.socket(family_of(address), socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            if spec.source_address is not None:
                _bind(sock, spec.source_address)
            _open(sock, address, spec.port, deadline)
        except _BindFailed as bind:
            sock.close()
            failure = bind_failure(spec.source_address or "", bind.error)
            break  # the same for every address: no use trying the others
        except OSError as error:
            sock.close()
            failure = connect_failure(error)
            continue
        except _DeadlinePassed:
            sock.close()
            raise
        session.connected(perf_counter(), local=_endpoint(sock.getsockname()),
                          peer=_endpoint(sock.getpeername()))  # fmt: skip
        return _Connection(session, sock, deadline)
    kind, detail = failure
    session.failed(kind, naming_addresses(detail, spec.host, tried), perf_counter())
    return None


def _endpoint(name: tuple[str, int] | tuple[str, int, int, int]) -> tuple[str, int]:
    """(address, port) of a socket name, IPv4 or IPv6."""
    return str(name[0]), int(name[1])


class _BindFailed(SmtpChecksError):
    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def _bind(sock: socket.socket, source: str) -> None:
    try:
        sock.bind((source, 0))
    except OSError as error:
        raise _BindFailed(error) from None


def _addresses(host: str, port: int, deadline: float, family: int) -> Addresses | str:
    literal = literal_addresses(host, family)
    if literal is not None:
        return literal
    found: list[Addresses | str] = []
    ready = threading.Event()

    def done(outcome: Addresses | str) -> None:
        found.append(outcome)
        ready.set()

    look_up(host, port, done, family)
    if not ready.wait(max(0.0, deadline - monotonic())):
        raise _DeadlinePassed
    return found[0]


def _open(sock: socket.socket, address: str, port: int, deadline: float) -> None:
    code = sock.connect_ex((address, port))
    if code in (errno.EINPROGRESS, errno.EWOULDBLOCK):
        _wait(sock, deadline, write=True)
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code:
        raise OSError(code, os.strerror(code))


def _wait(sock: socket.socket, deadline: float, *, write: bool = False) -> None:
    """Until `sock` can be read (or written), or raise _DeadlinePassed."""
    left = deadline - monotonic()
    if left <= 0:
        raise _DeadlinePassed
    readable, writable, _ = select.select(
        [] if write else [sock], [sock] if write else [], [], left
    )
    if not readable and not writable:
        raise _DeadlinePassed


class _Connection:
    """One non-blocking socket (plain, then perhaps TLS), driven for one session."""

    def __init__(self, session: SmtpSession, sock: socket.socket, deadline: float) -> None:
        self._session = session
        self._sock: socket.socket | ssl.SSLSocket = sock
        self._deadline = deadline
        self._graceful = False

    def drive(self) -> None:
        while True:
            action = self._session.next_action()
            if isinstance(action, Send):
                self._send(action.data)
            elif isinstance(action, Receive):
                self._receive()
            elif isinstance(action, StartTls):
                self._start_tls(action)
            elif isinstance(action, Close):
                self._graceful = action.graceful
                return

    def _send(self, data: bytes) -> None:
        while data:
            try:
                data = data[self._sock.send(data) :]
            except (BlockingIOError, InterruptedError):
                _wait(self._sock, self._deadline, write=True)
            except OSError as error:
                if not self._wants(error):
                    self._session.failed(*transfer_failure(error), perf_counter())
                    return

    def _receive(self) -> None:
        while True:
            try:
                data = self._sock.recv(_READ_SIZE)
            except (BlockingIOError, InterruptedError):
                _wait(self._sock, self._deadline)
                continue
            except OSError as error:
                if self._wants(error):
                    continue
                self._session.failed(*transfer_failure(error), perf_counter())
                return
            if data:
                self._session.received(data, perf_counter())
            else:
                self._session.closed_by_peer(perf_counter())
            return

    def _wants(self, error: OSError) -> bool:
        """A TLS socket that needs to read (or write) before it can go on: wait for it."""
        ssl = sys.modules.get("ssl")  # a plain socket never wants anything
        if ssl is None:
            return False
        if isinstance(error, ssl.SSLWantReadError):
            _wait(self._sock, self._deadline)
            return True
        if isinstance(error, ssl.SSLWantWriteError):
            _wait(self._sock, self._deadline, write=True)
            return True
        return False

    def _start_tls(self, action: StartTls) -> None:
        import ssl  # noqa: PLC0415 (only where TLS is used)

        from smtp_checks.shared.probe.tls import (  # noqa: PLC0415
            client_context,
            handshake_failure,
            session_info,
        )

        context = client_context(self._session.spec.tls)
        tls = context.wrap_socket(
            self._sock, server_hostname=action.server_hostname, do_handshake_on_connect=False
        )
        self._sock = tls
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                _wait(tls, self._deadline)
            except ssl.SSLWantWriteError:
                _wait(tls, self._deadline, write=True)
            except OSError as error:
                failure = handshake_failure(error, self._session.spec.tls)
                self._session.failed(*failure, perf_counter())
                return
        self._session.tls_started(session_info(tls), perf_counter())

    def close(self) -> None:
        if not self._graceful:
            # Abort (RST), as the asyncio driver does: nothing waits on a hostile peer.
            with contextlib.suppress(OSError):
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._sock.close()
