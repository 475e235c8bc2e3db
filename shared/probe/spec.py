"""What the probe is asked to do: the target, TLS, credentials and, for `message`, the mail."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, get_args


class Mode(StrEnum):
    LOGIN = "login"  # connect, EHLO, TLS, AUTH, QUIT
    MESSAGE = "message"  # the same, and send one message before QUIT
    # Connect, EHLO, TLS, then without AUTH: MAIL FROM, RCPT TO an outside address (which
    # must be refused), RSET, QUIT. Never DATA: nothing is ever sent.
    RELAY = "relay"
    # Send as `message` does, with a token that identifies the run, then find that very
    # message in a mailbox over IMAP or POP3 (shared/mailbox/) and measure its delivery.
    ROUNDTRIP = "roundtrip"

    @property
    def has_envelope(self) -> bool:
        """The mode needs a sender and recipients (a MessageSpec)."""
        return self is not Mode.LOGIN

    @property
    def sends_message(self) -> bool:
        """The mode sends a whole message (DATA), and words its failures as `message` does."""
        return self in (Mode.MESSAGE, Mode.ROUNDTRIP)


class TlsMode(StrEnum):
    STARTTLS = "starttls"
    IMPLICIT = "ssl"
    NONE = "none"

    @classmethod
    def from_layer(cls, layer: str) -> TlsMode:
        """The plugin's `layer=tls|ssl|none` smtp-option."""
        try:
            return _LAYERS[layer.strip().lower()]
        except KeyError:
            raise ValueError(f"unknown layer {layer!r} (expected tls, ssl or none)") from None

    @property
    def default_port(self) -> int:
        return 465 if self is TlsMode.IMPLICIT else 25


_LAYERS = {"tls": TlsMode.STARTTLS, "starttls": TlsMode.STARTTLS, "ssl": TlsMode.IMPLICIT}
_LAYERS["none"] = TlsMode.NONE


# The values of `ip=`, `proxy_protocol=` and `tls_min_version=`, for every layer that takes
# them (CLI, config, messages).
IpVersion = Literal[4, 6]
ProxyVersion = Literal["v1", "v2"]
TlsMinVersion = Literal["1.2", "1.3"]


@dataclass(frozen=True)
class TlsSettings:
    mode: TlsMode = TlsMode.STARTTLS
    verify: bool = True  # certificate chain and host name
    ca_file: str | None = None
    ca_path: str | None = None
    min_version: TlsMinVersion | None = None  # refuse weaker sessions; None: Python's (1.2)


# The SASL mechanisms the probe speaks (shared/probe/sasl.py), in no order of preference.
# XOAUTH2 (an OAuth 2 bearer token as the password) only when asked for by name.
MechanismName = Literal["PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"]
MECHANISMS: tuple[str, ...] = get_args(MechanismName)


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    mechanism: str | None = None  # one of MECHANISMS; None: the best the server offers


@dataclass(frozen=True)
class MessageSpec:
    """The probe mail. Recipients in `to`, `cc` and `bcc` all get a RCPT TO."""

    sender: str
    to: tuple[str, ...]
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    subject: str = "smtp-checks probe"
    body: str = "This message was sent by smtp-checks to test mail delivery.\n"
    content_type: str = "text/plain"
    charset: str = "utf-8"
    reply_to: str | None = None
    # Mode roundtrip: the run's token (in a header and in the subject) and the check it
    # belongs to (a header): what the mailbox side looks for, and cleans up after.
    token: str | None = None
    check_tag: str | None = None

    @property
    def recipients(self) -> tuple[str, ...]:
        return self.to + self.cc + self.bcc


@dataclass(frozen=True)
class CommandStep:
    """A command the check sends after EHLO, and what its reply must match (check_smtp's
    -C/-R): a regular expression searched in the reply's code and text; None: any reply."""

    command: str
    response: str | None = None


@dataclass(frozen=True)
class ProbeSpec:
    host: str
    port: int
    mode: Mode = Mode.LOGIN
    tls: TlsSettings = TlsSettings()
    timeout: float = 30.0  # seconds for the whole session, from connect to QUIT
    credentials: Credentials | None = None
    message: MessageSpec | None = None
    helo_name: str | None = None  # None: this machine's fully qualified name
    ip: IpVersion | None = None  # that address family only; None: the resolver's order
    source_address: str | None = None  # bind to this local address before connecting
    proxy_protocol: ProxyVersion | None = None  # send a PROXY header first
    expect: str | None = None  # a regular expression the banner must match (check_smtp -e)
    commands: tuple[CommandStep, ...] = ()
    record_transcript: bool = False  # keep the dialogue for --debug (AUTH lines redacted)

    def __post_init__(self) -> None:
        if self.mode.has_envelope and self.message is None:
            raise ValueError(f"a {self.mode} check needs a MessageSpec")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
