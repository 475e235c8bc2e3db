"""The probe mail: a proper RFC 5322 message, ready for DATA (CRLF, dot-stuffed)."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from smtp_checks.shared.probe.spec import MessageSpec


def build_message(spec: MessageSpec, domain: str) -> bytes:
    """The message as it goes after DATA, including the final `.` line."""
    message = EmailMessage(policy=policy.SMTP)
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=domain)
    message["From"] = spec.sender
    message["To"] = ", ".join(spec.to)
    if spec.cc:
        message["Cc"] = ", ".join(spec.cc)
    if spec.reply_to:
        message["Reply-To"] = spec.reply_to
    message["Subject"] = spec.subject
    # Monitoring mail must not trigger vacation replies or other automatic answers.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Mailer"] = "smtp-checks"
    maintype, _, subtype = spec.content_type.partition("/")
    if maintype != "text" or not subtype:
        raise ValueError(f"unsupported content type {spec.content_type!r} (expected text/*)")
    message.set_content(spec.body, subtype=subtype, charset=spec.charset)
    return dot_stuff(message.as_bytes()) + b".\r\n"


def dot_stuff(data: bytes) -> bytes:
    """Double a leading `.` on every line (RFC 5321 4.5.2) and end with CRLF."""
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    stuffed = data.replace(b"\r\n.", b"\r\n..")
    return b"." + stuffed if stuffed.startswith(b".") else stuffed
