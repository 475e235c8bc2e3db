"""Perl regular expressions as Centreon plugins use them (`--filter-perfdata`,
`--change-short-output`...), run with Python's `re`: the few Perl-only spellings translated,
and `s{pattern}{replacement}modifiers` emulated as the plugin's eval runs it."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import NamedTuple


def _translateperl_regex(pattern: str) -> str:
    """Rewrite the few Perl-only regex spellings into Python's; the rest is shared syntax."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith(("\\z", "\\Z"), i):
            out.append(r"\Z" if pattern[i + 1] == "z" else r"(?=\n?\Z)")
            i += 2
        elif pattern.startswith("\\k<", i) and (end := pattern.find(">", i + 3)) != -1:
            out.append(f"(?P={pattern[i + 3 : end]})")
            i = end + 1
        elif pattern[i] == "\\":
            out.append(pattern[i : i + 2])
            i += 2
        elif pattern.startswith("(?<", i) and not pattern.startswith(("(?<=", "(?<!"), i):
            out.append("(?P<")
            i += 3
        else:
            out.append(pattern[i])
            i += 1
    return "".join(out)


@lru_cache(maxsize=128)
def perl_regex(pattern: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(_translateperl_regex(pattern), flags)


def matches(pattern: str, text: str) -> bool:
    return perl_regex(pattern).search(text) is not None


def _balanced_braces(text: str) -> bool:
    # The plugin evals `s{pattern}{replacement}`: an unbalanced brace breaks the code.
    depth = 0
    escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


_REPLACEMENT_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "e": "\x1b", "a": "\x07"}
_UNSUPPORTED_ESCAPES = frozenset("ULulQE")


def _compile_replacement(replacement: str) -> Callable[[re.Match[str]], str]:
    """The replacement of `s{...}{...}` as Perl interpolates it: `$1`, `${1}`, `$&` and
    backslash escapes. Raises ValueError where the plugin's eval would fail (or where we do
    not emulate Perl: case modifiers, variables)."""
    parts: list[str | int] = []
    literal: list[str] = []
    i = 0
    n = len(replacement)

    def flush() -> None:
        if literal:
            parts.append("".join(literal))
            literal.clear()

    while i < n:
        ch = replacement[i]
        if ch == "\\":
            if i + 1 >= n:
                raise ValueError("trailing backslash")
            nxt = replacement[i + 1]
            if nxt in _UNSUPPORTED_ESCAPES:
                raise ValueError(f"unsupported escape \\{nxt}")
            if nxt == "x" and re.fullmatch(r"[0-9A-Fa-f]{2}", replacement[i + 2 : i + 4]):
                literal.append(chr(int(replacement[i + 2 : i + 4], 16)))
                i += 4
                continue
            literal.append("\0" if nxt == "0" else _REPLACEMENT_ESCAPES.get(nxt, nxt))
            i += 2
        elif ch == "$":
            group = re.match(r"\$(?:(\d+)|\{(\d+)\}|(&))", replacement[i:])
            if group is None:
                raise ValueError("variable interpolation")
            flush()
            parts.append(0 if group.group(3) else int(group.group(1) or group.group(2)))
            i += group.end()
        elif (
            ch == "@" and i + 1 < n and (replacement[i + 1].isalpha() or replacement[i + 1] in "_{")
        ):
            raise ValueError("array interpolation")
        else:
            literal.append(ch)
            i += 1
    flush()

    def expand(match: re.Match[str]) -> str:
        pieces: list[str] = []
        for part in parts:
            if isinstance(part, str):
                pieces.append(part)
            elif part <= (match.re.groups or 0):
                pieces.append(match.group(part) or "")
        return "".join(pieces)

    return expand


_MODIFIER_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}
_NEUTRAL_MODIFIERS = frozenset("godulanpc")


class Substitution(NamedTuple):
    """One `--change-short-output` / `--change-long-output` rule: `pattern~replacement~modifier`."""

    pattern: str
    replacement: str = ""
    modifiers: str = ""

    def apply(self, text: str) -> str:
        """Run `s{pattern}{replacement}modifiers` on `text`. Like the plugin (which evals the
        code and ignores failures), a rule that cannot run leaves the text unchanged."""
        flags = 0
        for modifier in self.modifiers:
            if modifier == "r":  # returns a copy: the plugin's variable is left unchanged
                return text
            if modifier in _MODIFIER_FLAGS:
                flags |= _MODIFIER_FLAGS[modifier]
            elif modifier == "a":
                flags |= re.ASCII
            elif modifier not in _NEUTRAL_MODIFIERS:
                return text  # `e` (Perl code) and anything Perl rejects
        if not (_balanced_braces(self.pattern) and _balanced_braces(self.replacement)):
            return text
        try:
            regex = perl_regex(self.pattern, flags)
            replace = _compile_replacement(self.replacement)
        except (re.error, ValueError):
            return text
        return regex.sub(replace, text, count=0 if "g" in self.modifiers else 1)
