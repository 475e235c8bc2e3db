"""Resolve a secret reference (`env:NAME`, `file:PATH`) where it is used, from that
machine's own environment or files: a worker's SMTP passwords, a consumer's Centreon API
password or token. The secret never travels in a message; the reference does."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from smtp_checks.shared.config import SecretRef
from smtp_checks.shared.errors import SecretNotFound

__all__ = ["SecretNotFound", "resolve_secret"]


def resolve_secret(reference: str, environ: Mapping[str, str] | None = None) -> str:
    ref = SecretRef.parse(reference)
    if ref.kind == "env":
        value = (os.environ if environ is None else environ).get(ref.name)
        if value is None:
            raise SecretNotFound(f"credential {ref} not found: no such environment variable")
        return value
    try:
        # One trailing newline is how editors and `echo` leave a secret file; not part of it.
        return Path(ref.name).read_text(encoding="utf-8").removesuffix("\n")
    except OSError as error:
        raise SecretNotFound(f"credential {ref} not readable: {error.strerror}") from None
