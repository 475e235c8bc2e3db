"""What both drivers share about the network itself: finding the server's addresses (the
resolver in a daemon thread, so a hung resolver cannot outlive the deadline nor hold the
process at exit) and wording a socket or TLS error as a probe failure."""

from __future__ import annotations

import functools
import os
import socket
import sys
import threading
from collections.abc import Callable

from smtp_checks.shared.probe.failures import FailureKind

Addresses = list[str]
FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}


def family_of(address: str) -> int:
    """The family of an IP address literal."""
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def wanted_family(ip: int | None, source_address: str | None) -> int:
    """The address family to resolve: `ip=`'s, else the source address's, else any."""
    if ip is not None:
        return FAMILIES[ip]
    return family_of(source_address) if source_address else socket.AF_UNSPEC


def literal_addresses(host: str, family: int) -> Addresses | str | None:
    """A host given as an address: itself, or why it is of the wrong family; None for a
    name (the resolver's business)."""
    if not is_ip_address(host):
        return None
    if family not in (socket.AF_UNSPEC, family_of(host)):
        return no_address(host, family)
    return [host]


def no_address(host: str, family: int) -> str:
    version = "IPv4" if family == socket.AF_INET else "IPv6"
    return f"no {version} address for {host}"


def bind_failure(source: str, error: OSError) -> tuple[FailureKind, str]:
    # asyncio words its own message around the errno; the errno's own words are the same
    # from both drivers.
    reason = os.strerror(error.errno) if error.errno else str(error)
    return FailureKind.NETWORK, f"cannot bind to source address {source}: {reason}"


def naming_addresses(detail: str, host: str, tried: list[str]) -> str:
    """A connection failure's reason with the addresses tried, when the host is a name."""
    if not tried or is_ip_address(host):
        return detail
    return f"{detail} ({', '.join(tried)})"


def is_ip_address(host: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return True
    return False


def look_up(
    host: str, port: int, done: Callable[[Addresses | str], None], family: int = socket.AF_UNSPEC
) -> None:
    """Resolve `host` (in `family` only, unless AF_UNSPEC) in a daemon thread; `done` gets
    its addresses in the resolver's order, each once, or why there are none."""

    def run() -> None:
        outcome: Addresses | str
        try:
            infos = socket.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
            outcome = list(dict.fromkeys(str(info[4][0]) for info in infos))
        except OSError as error:
            outcome = f"{error.strerror or error} ({host})"
            if family != socket.AF_UNSPEC and _resolves(host, port):
                outcome = no_address(host, family)  # it has addresses, of the other family
        except (UnicodeError, ValueError):  # a label longer than 63 characters, a NUL...
            outcome = f"invalid host name ({host[:80]})"
        done(outcome)

    threading.Thread(target=run, name="smtp-checks-resolve", daemon=True).start()


def _resolves(host: str, port: int) -> bool:
    try:
        return bool(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
    except OSError:
        return False


@functools.lru_cache(maxsize=1)
def local_fqdn() -> str:
    """The EHLO name when none is given: this machine's fully qualified name."""
    return socket.getfqdn()


def connect_failure(error: OSError) -> tuple[FailureKind, str]:
    if isinstance(error, ConnectionRefusedError):
        return FailureKind.REFUSED, "Connection refused"
    return FailureKind.NETWORK, error.strerror or str(error)


def transfer_failure(error: BaseException) -> tuple[FailureKind, str]:
    """A read or a write that failed once connected."""
    ssl = sys.modules.get("ssl")  # no TLS error can happen where ssl was never imported
    if ssl is not None and isinstance(error, ssl.SSLError):
        return FailureKind.TLS, f"TLS error: {error.reason or error}"
    if isinstance(error, OSError):
        return FailureKind.NETWORK, error.strerror or str(error)
    return FailureKind.NETWORK, str(error) or type(error).__name__
