"""What both drivers share about the network itself: finding the server's addresses (the
resolver in a daemon thread, so a hung resolver cannot outlive the deadline nor hold the
process at exit) and wording a socket or TLS error as a probe failure."""

from __future__ import annotations

import functools
import socket
import sys
import threading
from collections.abc import Callable

from smtp_checks.shared.probe.failures import FailureKind

Addresses = list[str]


def is_ip_address(host: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return True
    return False


def look_up(host: str, port: int, done: Callable[[Addresses | str], None]) -> None:
    """Resolve `host` in a daemon thread; `done` gets its addresses in the resolver's order,
    each once, or why there are none."""

    def run() -> None:
        outcome: Addresses | str
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            outcome = list(dict.fromkeys(str(info[4][0]) for info in infos))
        except OSError as error:
            outcome = f"{error.strerror or error} ({host})"
        except (UnicodeError, ValueError):  # a label longer than 63 characters, a NUL...
            outcome = f"invalid host name ({host[:80]})"
        done(outcome)

    threading.Thread(target=run, name="smtp-checks-resolve", daemon=True).start()


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
