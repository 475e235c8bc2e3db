"""The rules every value given to the probe obeys, whether it comes from a command-line option
(`smtp-checks check`) or from a key of the config: one set of rules for both.

Each rule returns the value or raises ValueError saying what is wrong with it; the caller
names the option or key. A value is checked before any connection is made: a bad one is the
operator's mistake (UNKNOWN), not the server's (CRITICAL), and never a traceback. The value is
quoted in the reason only where it is printable, one-line text.
"""

from __future__ import annotations

import codecs
import ipaddress
import math
import os
import re
import socket
import ssl
import unicodedata
from typing import cast, get_args

from smtp_checks.shared.probe.spec import IpVersion, ProxyVersion, TlsMinVersion
from smtp_checks.shared.probe.wire import family_of

MAX_HOST_NAME = 253  # characters of a DNS name (RFC 1035), without the trailing dot
MAX_LABEL = 63
_ADDRESS = re.compile(r"[^\s<>@]+@[^\s<>@]+")


def text(value: str) -> str:
    """Any text a mail may carry (a body, a password): valid UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("is not valid UTF-8") from None
    return value


def one_line(value: str) -> str:
    """Text that goes into one SMTP command or header line: no line break of any kind (Python's
    mail library also breaks lines at \\x1c-\\x1e, \\x85, U+2028 and U+2029), no control
    character but TAB."""
    text(value)
    if any(_breaks_line(character) for character in value):
        raise ValueError("must be one line (it holds a CR, LF or another control character)")
    return value


def _breaks_line(character: str) -> bool:
    return character != "\t" and (
        unicodedata.category(character) == "Cc" or character in "\u2028\u2029"
    )


def host_name(value: str) -> str:
    """An IP address, or a DNS name the resolver can take."""
    one_line(value)
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    name = value.removesuffix(".")
    if not name:
        raise ValueError("is empty")
    if len(name) > MAX_HOST_NAME:
        raise ValueError(f"is {len(name)} characters long (a host name has at most 253)")
    if any(character.isspace() for character in name):
        raise ValueError(f"'{value}' holds a space")
    for label in name.split("."):
        if not label:
            raise ValueError(f"'{value}' has an empty label (two dots in a row)")
        if len(label) > MAX_LABEL:
            raise ValueError(f"has a label of {len(label)} characters (at most 63)")
    try:
        name.encode("idna")  # what the resolver sends
    except UnicodeError:
        raise ValueError(f"'{value}' is not a name DNS can carry") from None
    return value


def helo_name(value: str) -> str:
    """The name this machine gives in EHLO: an ASCII host name or an address literal."""
    host_name(value)
    if not value.isascii():
        raise ValueError(f"'{value}' is not ASCII (EHLO takes an ASCII name)")
    return value


def mail_address(value: str) -> str:
    """An address for MAIL FROM, RCPT TO or a header: `local@domain`, or `postmaster`."""
    one_line(value)
    if value.lower() != "postmaster" and not _ADDRESS.fullmatch(value):
        raise ValueError(f"'{value}' is not a mail address (local@domain)")
    return value


def charset(value: str) -> str:
    one_line(value)
    try:
        codecs.lookup(value)
    except LookupError:
        raise ValueError(f"unknown charset '{value}'") from None
    return value


def content_type(value: str) -> str:
    one_line(value)
    if not re.fullmatch(r"text/[A-Za-z0-9.+-]+", value):
        raise ValueError(f"'{value}' is not a text content type (text/plain, text/html...)")
    return value


MAX_TIMEOUT = 86400.0  # seconds: a day; beyond, a deadline is a typo (and overflows clocks)


def timeout(value: float) -> float:
    """A check's timeout: a finite number of seconds, positive, at most a day."""
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"'{value:g}' is not a positive number of seconds")
    if value > MAX_TIMEOUT:
        raise ValueError(f"'{value:g}' seconds is more than a day ({MAX_TIMEOUT:g})")
    return value


def ip_version(value: str) -> IpVersion:
    """`ip=`: 4 or 6."""
    return cast("IpVersion", int(_one_of(value.strip(), get_args(IpVersion), "an address family")))


def proxy_version(value: str) -> ProxyVersion:
    """`proxy_protocol=`: v1 (text) or v2 (binary)."""
    return cast("ProxyVersion", _one_of(value, get_args(ProxyVersion), "a PROXY protocol version"))


def tls_version(value: str) -> TlsMinVersion:
    """`tls_min_version=`: 1.2 or 1.3."""
    what = "a TLS version this probe can require"
    return cast("TlsMinVersion", _one_of(value, get_args(TlsMinVersion), what))


def _one_of(value: str, choices: tuple[object, ...], what: str) -> str:
    names = [str(choice) for choice in choices]
    if value not in names:
        raise ValueError(f"'{value}' is not {what}: {' or '.join(names)}")
    return value


def ip_literal(value: str) -> str:
    """An IPv4 or IPv6 address, as `source_address=` takes it."""
    one_line(value)
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"'{value}' is not an IP address") from None
    return value


def local_address(value: str) -> str:
    """An address of this machine, to bind to (where the probe runs: the CLI, a worker)."""
    ip_literal(value)
    with socket.socket(family_of(value), socket.SOCK_STREAM) as probe:
        try:
            probe.bind((value, 0))
        except OSError as error:
            raise ValueError(
                f"{value} is not an address of this machine ({error.strerror or error})"
            ) from None
    return value


def families(host: str, ip: IpVersion | None, source_address: str | None) -> None:
    """`ip=`, the source address and a host given as an address must agree."""
    wanted = {4: "IPv4", 6: "IPv6"}
    versions = {
        "the host": _version(host),
        "source_address": _version(source_address) if source_address else None,
        "ip": wanted[ip] if ip is not None else None,
    }
    given = {name: version for name, version in versions.items() if version is not None}
    if len(set(given.values())) > 1:
        raise ValueError(
            "address families disagree: " + ", ".join(f"{n} {v}" for n, v in given.items())
        )


def _version(address: str) -> str | None:
    try:
        return f"IPv{ipaddress.ip_address(address).version}"
    except ValueError:
        return None  # a name: any family


def regex(value: str) -> str:
    """A regular expression (Python's `re`, close to check_smtp's and Perl's)."""
    text(value)
    try:
        re.compile(value)
    except re.error as error:
        raise ValueError(f"'{value}' is not a regular expression: {error}") from None
    return value


def command(value: str) -> str:
    """A command line of the check's own dialogue: one line, not empty."""
    one_line(value)
    if not value.strip():
        raise ValueError("is empty")
    return value


def ca_file(path: str) -> str:
    """A file of PEM certificates to verify the server with."""
    one_line(path)
    if not os.path.isfile(path):
        raise ValueError(f"'{path}' is not a file")
    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError) as error:
        raise ValueError(f"'{path}' holds no PEM certificate ({error})") from None
    return path


def ca_directory(path: str) -> str:
    one_line(path)
    if not os.path.isdir(path):
        raise ValueError(f"'{path}' is not a directory")
    return path
