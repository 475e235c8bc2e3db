"""The probe mail is a proper, dot-stuffed RFC 5322 message."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import default

from hypothesis import given
from hypothesis import strategies as st

from smtp_checks.shared.probe.message import build_message, dot_stuff
from smtp_checks.shared.probe.spec import MessageSpec


def _unstuff(data: bytes) -> bytes:
    assert data.endswith(b"\r\n.\r\n")
    lines = data[: -len(b".\r\n")].split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


def test_headers_and_body() -> None:
    spec = MessageSpec(
        sender="a@example.com", to=("b@example.net", "c@example.net"), cc=("d@example.net",),
        bcc=("e@example.net",), subject="Probé", body="hello\n", content_type="text/html",
        reply_to="ops@example.com",
    )  # fmt: skip
    data = build_message(spec, "probe.example.com")
    mail = message_from_bytes(_unstuff(data), policy=default)
    assert mail["From"] == "a@example.com"
    assert mail["To"] == "b@example.net, c@example.net"
    assert mail["Cc"] == "d@example.net"
    assert mail["Subject"] == "Probé"
    assert mail["Reply-To"] == "ops@example.com"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["Message-ID"].endswith("@probe.example.com>")
    assert mail["Date"]
    assert "Bcc" not in mail
    assert mail.get_content_type() == "text/html"
    assert b"\n" not in data.replace(b"\r\n", b"")  # CRLF line endings only


@given(st.lists(st.text(alphabet=".ab", max_size=5), max_size=6))
def test_dot_stuffing_round_trips(lines: list[str]) -> None:
    data = "\r\n".join(lines).encode() + b"\r\n"
    stuffed = dot_stuff(data) + b".\r\n"
    assert b"\r\n.\r\n" not in stuffed[:-3]  # the end marker appears only at the end
    assert _unstuff(stuffed) == data
