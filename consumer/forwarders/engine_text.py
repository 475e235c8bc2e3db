"""Write text so that the monitoring engine shows it as it was sent.

Whichever way a passive result enters Centreon (the command file, API v1, API v2: the APIs
copy the output into the same external command, unescaped), the engine that executes the
command unescapes the output before storing it. The two readers differ:

- Nagios 4 (and Centreon Engine up to 22.10) make one pass: `\\\\` becomes `\\` and `\\n` a
  line break (`base/utils.c`, `unescape_check_result_output`). Doubling every backslash is
  then exact.
- Centreon Engine 23.04 and later make four passes in a row, `\\n`, `\\r`, `\\t`, then
  `\\\\` (`engine/src/string.cc`, `string::unescape(std::string&)`). Doubled backslashes
  survive, but a backslash directly before `n`, `r` or `t` always ends as a control
  character, however it is written: no encoding carries those three pairs. Such a
  backslash is written as U+29F5 (REVERSE SOLIDUS OPERATOR), which reads the same and keeps
  the result on one line. Every other backslash is doubled.

`centreon` (the config's `engine:` of a forwarder) is the default: it is right on every
Centreon version, and on Nagios it only shows those rare pairs with the lookalike. Both
cores also turn `;` into `:` in the short output; nothing written can prevent that.
"""

from __future__ import annotations

import re

from smtp_checks.shared.config import EngineReader as Reader

__all__ = ["LOOKALIKE_BACKSLASH", "Reader", "for_engine"]

LOOKALIKE_BACKSLASH = "\u29f5"
_CONTROL_PAIR = re.compile(r"\\(?=[nrt])")


def for_engine(text: str, reader: Reader = Reader.CENTREON) -> str:
    """`text` (one line, already sanitised) as it must be written for `reader` to show it
    unchanged."""
    if "\\" not in text:
        return text
    if reader is Reader.CENTREON:
        text = _CONTROL_PAIR.sub(LOOKALIKE_BACKSLASH, text)
    return text.replace("\\", "\\\\")
