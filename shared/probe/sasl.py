"""SASL mechanisms for SMTP AUTH (RFC 4954): PLAIN, LOGIN, CRAM-MD5, and XOAUTH2 (Google's and
Microsoft's OAuth 2 bearer tokens: the password is the token).

A mechanism only computes what to answer; the probe drives the exchange. Which mechanism is
"best" depends on the channel: over TLS, PLAIN is the standard choice; in clear text,
CRAM-MD5 at least keeps the password off the wire.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass

from smtp_checks.shared.probe.spec import MECHANISMS, Credentials

_MAX_EXPLAINED = 2048  # bytes of an error challenge worth decoding (the output shows 200)


@dataclass(frozen=True)
class Mechanism:
    name: str

    def initial_response(self, credentials: Credentials) -> bytes | None:
        """What goes on the AUTH line itself, if the mechanism sends something first."""
        if self.name == "PLAIN":
            return f"\0{credentials.username}\0{credentials.password}".encode()
        if self.name == "XOAUTH2":
            user, token = credentials.username, credentials.password
            return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()
        return None

    def challenge(self, text: str) -> bytes | None:
        """A 334 reply's text decoded, or None when it is not base64."""
        try:
            return base64.b64decode(text.strip() or b"", validate=False)
        except binascii.Error:
            return None

    def answer(self, challenge: bytes, step: int, credentials: Credentials) -> bytes:
        """The answer to the server's `step`-th (0-based) 334 challenge, decoded."""
        if self.name == "LOGIN":
            return (credentials.username if step == 0 else credentials.password).encode()
        if self.name == "CRAM-MD5":
            digest = hmac.new(credentials.password.encode(), challenge, hashlib.md5).hexdigest()
            return f"{credentials.username} {digest}".encode()
        if self.name == "XOAUTH2":
            return b""  # the challenge was the error: an empty answer gets the final reply
        raise ValueError(f"{self.name} expects no challenge")

    def explain(self, challenge: bytes) -> str | None:
        """What a challenge says when it is an error, not a question (XOAUTH2 sends a JSON
        object: `{"status":"401","schemes":"bearer","scope":"..."}`); None otherwise."""
        if self.name != "XOAUTH2":
            return None
        text = challenge[:_MAX_EXPLAINED].decode("utf-8", "replace")
        try:
            error = json.loads(text)
        except (ValueError, RecursionError):  # not JSON, or hostile nesting
            return text
        if not isinstance(error, dict):
            return text
        return ", ".join(f"{key} {value}" for key, value in error.items())


SUPPORTED = {name: Mechanism(name) for name in MECHANISMS}
_PREFERENCE_OVER_TLS = ("PLAIN", "LOGIN", "CRAM-MD5")
_PREFERENCE_IN_CLEAR = ("CRAM-MD5", "PLAIN", "LOGIN")


def choose(offered: Iterable[str], encrypted: bool) -> Mechanism | None:
    """The best supported mechanism among those the server offers, or None."""
    offered_names = {name.upper() for name in offered}
    preference = _PREFERENCE_OVER_TLS if encrypted else _PREFERENCE_IN_CLEAR
    for name in preference:
        if name in offered_names:
            return SUPPORTED[name]
    return None


def encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode(text: str) -> bytes:
    return base64.b64decode(text.strip() or b"", validate=False)
