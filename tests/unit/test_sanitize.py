"""Server text is made safe before it can reach Centreon."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from smtp_checks.shared.sanitize import MAX_SERVER_TEXT, sanitize


def test_forged_command_becomes_one_harmless_line() -> None:
    hostile = "ready\n[123] PROCESS_SERVICE_CHECK_RESULT;victim;svc;0;owned | 'time'=1s"
    assert sanitize(hostile) == (
        "ready [123] PROCESS_SERVICE_CHECK_RESULT;victim;svc;0;owned / 'time'=1s"
    )


def test_invalid_utf8_is_replaced() -> None:
    assert sanitize(b"220 \xff\xfe ok") == "220 \ufffd\ufffd ok"


def test_long_text_is_cut_with_an_ellipsis() -> None:
    text = sanitize("x" * 1_000_000)
    assert len(text) == MAX_SERVER_TEXT
    assert text.endswith("...")


def test_unicode_line_separators_and_c1_controls_are_removed() -> None:
    assert sanitize("a\u2028b\u2029c\x85d\x1b[31m") == "a b c d [31m"


@given(st.one_of(st.text(), st.binary()))
def test_always_one_printable_line_without_pipe(text: str | bytes) -> None:
    clean = sanitize(text)
    assert clean.isprintable()
    assert "|" not in clean
    assert len(clean) <= MAX_SERVER_TEXT
    clean.encode("utf-8")  # valid UTF-8: no lone surrogates survive


_WORDS = st.text(
    alphabet=st.characters(categories=("L", "N", "P", "S"), exclude_characters="|"), min_size=1
)


@given(st.lists(_WORDS, max_size=8).map(" ".join))
def test_ordinary_text_is_kept(text: str) -> None:
    assert sanitize(text, max_length=10_000) == text
