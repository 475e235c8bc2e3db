"""Make text from the network safe to show to Centreon: one line, printable, bounded.

A hostile SMTP server controls its banner and replies. Centreon's command file takes one
command per line and splits output from perfdata at `|`, so either character in server
text could forge a result. Everything a server says passes through here before it is
put into a probe failure, and so before any output is built from it.
"""

from __future__ import annotations

import re

MAX_SERVER_TEXT = 200
_ELLIPSIS = "..."
_SPACES = re.compile(r" {2,}")


def sanitize(text: str | bytes, max_length: int = MAX_SERVER_TEXT) -> str:
    """Return `text` as one printable line without `|`, at most `max_length` characters.

    Bytes are decoded as UTF-8 with invalid sequences replaced, so the result is always
    valid UTF-8. Every non-printable character (controls and newlines, line separators,
    format characters such as bidi overrides, unassigned code points) becomes a space;
    `|` becomes `/`.
    """
    # Cut early: a hostile reply can be long, and only the start is ever shown.
    if isinstance(text, bytes):
        text = text[: max_length * 4].decode("utf-8", errors="replace")
    text = "".join(c if c.isprintable() else " " for c in text[: max_length * 4])
    text = text.replace("|", "/")
    text = _SPACES.sub(" ", text).strip()
    if len(text) > max_length:
        text = text[: max_length - len(_ELLIPSIS)].rstrip() + _ELLIPSIS
    return text
