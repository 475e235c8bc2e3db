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
# C0 and C1 controls, DEL, and the Unicode line/paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPACES = re.compile(r" {2,}")


def sanitize(text: str | bytes, max_length: int = MAX_SERVER_TEXT) -> str:
    """Return `text` as one printable line without `|`, at most `max_length` characters.

    Bytes are decoded as UTF-8 with invalid sequences replaced, so the result is always
    valid UTF-8. Controls (newlines included) become a space; `|` becomes `/`.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = _CONTROL.sub(" ", text).replace("|", "/")
    text = _SPACES.sub(" ", text).strip()
    if len(text) > max_length:
        text = text[: max_length - len(_ELLIPSIS)].rstrip() + _ELLIPSIS
    return text
