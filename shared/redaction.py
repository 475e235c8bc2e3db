"""Keep secrets out of what we write: text that may contain a known secret, and messages
whose secret-looking fields must not be copied. One mask for both."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MASK = "<redacted>"

# Keys whose values are never copied (a dead letter keeps the message for an operator: an
# invalid message may carry a password its producer should not have put there).
_SECRET_WORDS = ("pass", "secret", "token", "auth", "credential")


class Redactor:
    """Masks the secrets it was told (a password, tokens) in text bound for a log line, an
    error or an output."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        if secret:
            self._secrets.add(secret)

    def __call__(self, text: str) -> str:
        # Longest first, so a secret that contains another is masked whole.
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text


def redact_fields(value: Any) -> Any:
    """`value` (decoded JSON) with every secret-looking key's value masked, recursively."""
    if isinstance(value, dict):
        return {
            key: MASK
            if isinstance(key, str) and any(word in key.lower() for word in _SECRET_WORDS)
            else redact_fields(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_fields(item) for item in value]
    return value
