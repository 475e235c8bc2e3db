"""The PROXY protocol header (HAProxy's, versions 1 and 2) a check sends first to a server
behind a proxy that expects one (Postfix's `smtpd_upstream_proxy_protocol = haproxy`,
HAProxy's `accept-proxy`): it names the connection's real source and destination, as
the proxy in front of the server would.

Version 1 is one text line, version 2 a binary block; both for TCP over IPv4 or IPv6, from
the connected socket's own addresses.
"""

from __future__ import annotations

import ipaddress
import struct

Endpoint = tuple[str, int]  # (address, port), as a socket names it

_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V2_PROXY_COMMAND = 0x21  # version 2, command PROXY
_V2_TCP4, _V2_TCP6 = 0x11, 0x21


def proxy_header(version: str, source: Endpoint, destination: Endpoint) -> bytes:
    """The header of `version` ("v1" or "v2") for a connection from `source` to
    `destination`."""
    src, dst = ipaddress.ip_address(source[0]), ipaddress.ip_address(destination[0])
    if src.version != dst.version:
        raise ValueError("a PROXY header names two addresses of one family")
    if version == "v1":
        family = "TCP4" if src.version == 4 else "TCP6"
        return f"PROXY {family} {src} {dst} {source[1]} {destination[1]}\r\n".encode()
    addresses = src.packed + dst.packed + struct.pack("!HH", source[1], destination[1])
    family_byte = _V2_TCP4 if src.version == 4 else _V2_TCP6
    return (
        _V2_SIGNATURE
        + bytes([_V2_PROXY_COMMAND, family_byte])
        + struct.pack("!H", len(addresses))
        + addresses
    )


def shown(version: str, source: Endpoint, destination: Endpoint) -> str:
    """The header as the `--debug` transcript shows it."""
    if version == "v1":
        return proxy_header(version, source, destination).decode().rstrip("\r\n")
    return f"<PROXY v2 header: {source[0]}:{source[1]} -> {destination[0]}:{destination[1]}>"
