"""Run an SMTP session (shared/probe/dialogue.py) over asyncio: the workers' driver, one
event loop for thousands of sessions at once.

The session's bytes are read by a protocol whose `data_received` hands them on with the time
they arrived, not when a coroutine got to them: with a thousand sessions on one loop, that
wait is ours, not the server's. One deadline bounds the whole session, whatever the server
does. Never raises for anything the server does.
"""

from __future__ import annotations

import asyncio
import contextlib
from time import perf_counter

from smtp_checks.shared.probe.dialogue import Close, Receive, Send, SmtpSession, StartTls
from smtp_checks.shared.probe.failures import FailureKind
from smtp_checks.shared.probe.result import ProbeResult
from smtp_checks.shared.probe.spec import ProbeSpec
from smtp_checks.shared.probe.wire import (
    Addresses,
    bind_failure,
    connect_failure,
    literal_addresses,
    local_fqdn,
    look_up,
    naming_addresses,
    transfer_failure,
    wanted_family,
)


async def run_probe(spec: ProbeSpec, *, deadline: float | None = None) -> ProbeResult:
    """Run one session as `spec` says.

    `deadline` (a `time.monotonic()` value, the loop's clock) ends the session earlier than
    `spec.timeout` when part of the check's time was already spent (waiting for a permit,
    say); failures still word the timeout as configured.
    """
    message = None
    if spec.mode.sends_message and spec.message is not None:
        from smtp_checks.shared.probe.message import build_message  # noqa: PLC0415 (slow import)

        message = build_message(spec.message, spec.helo_name or local_fqdn())
    # Everything above happens before the clock starts: `time` is the server's time.
    session = SmtpSession(
        spec, helo_name=spec.helo_name or local_fqdn(), message=message, started_at=perf_counter()
    )
    budget = asyncio.timeout(spec.timeout) if deadline is None else asyncio.timeout_at(deadline)
    wire: _Wire | None = None
    try:
        async with budget:
            wire = await _connect(session, spec)
            if wire is not None:
                await wire.drive()
    except TimeoutError:
        # A kernel-level timeout (ETIMEDOUT) is an OSError handled lower down, so this is the
        # deadline unless asyncio says otherwise.
        session.timed_out(perf_counter(), deadline_expired=budget.expired())
    finally:
        if wire is not None:
            wire.close(graceful=session.result().ok)
    return session.result()


async def _connect(session: SmtpSession, spec: ProbeSpec) -> _Wire | None:
    family = wanted_family(spec.ip, spec.source_address)
    addresses = await _addresses(spec.host, spec.port, family)
    if isinstance(addresses, str):
        session.failed(FailureKind.DNS, addresses, perf_counter())
        return None
    loop = asyncio.get_running_loop()
    source = (spec.source_address, 0) if spec.source_address is not None else None
    failure = (FailureKind.NETWORK, "no address to connect to")
    tried: list[str] = []
    for address in addresses:  # the next one on failure, within the same deadline
        tried.append(address)
        session.trying(address)
        wire = _Wire(session)
        try:
            await loop.create_connection(
                lambda: wire,  # noqa: B023
                address,
                spec.port,
                local_addr=source,
            )
        except OSError as error:
            if source is not None and _is_bind_error(error):
                failure = bind_failure(source[0], error)
                break  # the same for every address: no use trying the others
            failure = connect_failure(error)
            continue
        session.connected(perf_counter(), local=wire.endpoint("sockname"),
                          peer=wire.endpoint("peername"))  # fmt: skip
        return wire
    kind, detail = failure
    session.failed(kind, naming_addresses(detail, spec.host, tried), perf_counter())
    return None


def _is_bind_error(error: OSError) -> bool:
    """asyncio binds the local address itself and says so in the error's text (the same
    errno from connect() is a connect failure, and the next address is tried)."""
    return "while attempting to bind" in str(error)


async def _addresses(host: str, port: int, family: int) -> Addresses | str:
    literal = literal_addresses(host, family)
    if literal is not None:
        return literal
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Addresses | str] = loop.create_future()

    def settle(outcome: Addresses | str) -> None:
        if not future.done():  # the check may have given up
            future.set_result(outcome)

    def done(outcome: Addresses | str) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            loop.call_soon_threadsafe(settle, outcome)

    look_up(host, port, done, family)
    return await future


class _Wire(asyncio.Protocol):
    """One connection: bytes in go to the session at once, its actions go out."""

    def __init__(self, session: SmtpSession) -> None:
        self._session = session
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] | None = None

    # --- the protocol (called by the loop) -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._session.received(data, perf_counter())
        self._wake()

    def eof_received(self) -> bool | None:
        self._session.closed_by_peer(perf_counter())
        self._wake()
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None:
            self._session.closed_by_peer(perf_counter())
        else:
            self._session.failed(*transfer_failure(exc), perf_counter())
        self._wake()

    def endpoint(self, name: str) -> tuple[str, int] | None:
        """(address, port) of the connection's `sockname` or `peername`."""
        found = self._transport.get_extra_info(name) if self._transport else None
        return (str(found[0]), int(found[1])) if found else None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # --- the driver ------------------------------------------------------------------------

    async def drive(self) -> None:
        """Do what the session asks until it closes."""
        while True:
            action = self._session.next_action()
            if isinstance(action, Send):
                assert self._transport is not None
                self._transport.write(action.data)
            elif isinstance(action, Receive):
                self._waiter = asyncio.get_running_loop().create_future()
                await self._waiter
            elif isinstance(action, StartTls):
                await self._start_tls(action)
            elif isinstance(action, Close):
                return

    async def _start_tls(self, action: StartTls) -> None:
        from smtp_checks.shared.probe.tls import (  # noqa: PLC0415 (only where TLS is used)
            client_context,
            handshake_failure,
            session_info,
        )

        assert self._transport is not None
        context = client_context(self._session.spec.tls)
        try:
            transport = await asyncio.get_running_loop().start_tls(
                self._transport, self, context, server_hostname=action.server_hostname
            )
        except (OSError, EOFError) as error:
            self._session.failed(*handshake_failure(error, self._session.spec.tls), perf_counter())
            return
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        ssl_object = transport.get_extra_info("ssl_object")
        self._session.tls_started(session_info(ssl_object), perf_counter())

    def close(self, *, graceful: bool) -> None:
        """Close without waiting: a hostile peer must not hold us past the deadline."""
        if self._transport is None:
            return
        if graceful:
            self._transport.close()
        else:
            self._transport.abort()
