"""The probe mail: a proper RFC 5322 message, ready for DATA (CRLF, dot-stuffed)."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from smtp_checks.shared.probe.spec import MessageSpec

# Mode roundtrip: the headers the mailbox side searches for (shared/mailbox/).
TOKEN_HEADER = "X-Smtp-Checks-Token"  # noqa: S105 (a run id, not a secret)
CHECK_HEADER = "X-Smtp-Checks-Check"


def check_tag(check_id: str) -> str:
    """The value of a round trip's check header: in angle brackets, so that an IMAP search
    (a substring match) for one check never matches another's (`mx1/...` in `amx1/...`)."""
    return f"<{check_id}>"


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
    message["Subject"] = spec.subject if spec.token is None else f"{spec.subject} [{spec.token}]"
    if spec.token is not None:
        message[TOKEN_HEADER] = spec.token
    if spec.check_tag is not None:
        message[CHECK_HEADER] = spec.check_tag
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
