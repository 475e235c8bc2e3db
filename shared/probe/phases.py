"""The steps of an SMTP session, in the order the probe walks through them."""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    CONNECT = "connect"  # name resolution and TCP connect
    TLS = "tls"  # implicit TLS handshake, or STARTTLS command and handshake
    BANNER = "banner"
    EHLO = "ehlo"
    COMMAND = "command"  # the check's own command/response steps (check_smtp -C/-R)
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    QUIT = "quit"

    @property
    def sends_message(self) -> bool:
        """True for the phases that belong to sending a message rather than logging in."""
        return self in _SENDING


_SENDING = frozenset({Phase.MAIL, Phase.RCPT, Phase.DATA, Phase.QUIT})
