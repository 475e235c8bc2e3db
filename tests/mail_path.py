"""A delivery path for round-trip tests: an SMTP server (aiosmtpd) that delivers what it
accepts into a real Dovecot's Maildirs (tests/dovecot.py), the way a local delivery agent
does, with a `Received:` header of its own. The recipient's `+detail` picks the path:

- `alice@...`: INBOX at once;
- `alice+junk@...`: the Junk folder (a spam filter's verdict);
- `alice+late@...`: INBOX after `late_seconds` (a queue that holds mail);
- `alice+lost@...`: accepted (250), never delivered.

    with MailPath(dovecot, late_seconds=6) as path:
        ... send to 127.0.0.1:path.port ...
"""

from __future__ import annotations

import threading
from email.utils import formatdate

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.dovecot import DovecotInstance, free_port


class _Deliver:
    def __init__(self, path: MailPath) -> None:
        self._path = path

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        for recipient in envelope.rcpt_tos:
            self._path.route(recipient, content)
        return "250 2.0.0 OK: queued"


class MailPath:
    def __init__(self, dovecot: DovecotInstance, *, late_seconds: float = 6.0) -> None:
        self.dovecot = dovecot
        self.late_seconds = late_seconds
        self.port = free_port()
        self.lost: list[bytes] = []
        self._timers: list[threading.Timer] = []
        self._controller = Controller(_Deliver(self), hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> MailPath:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()
        for timer in self._timers:
            timer.cancel()

    def route(self, recipient: str, content: bytes) -> None:
        local = recipient.split("@", 1)[0]
        user, _, detail = local.partition("+")
        received = (
            f"Received: from client by mx.example.test with ESMTP for <{recipient}>; "
            f"{formatdate()}\r\n"
        ).encode()
        message = received + content
        if detail == "lost":
            self.lost.append(message)
        elif detail == "junk":
            self.dovecot.deliver(user, message, folder="Junk")
        elif detail == "late":
            timer = threading.Timer(self.late_seconds, self.dovecot.deliver, (user, message))
            timer.daemon = True
            self._timers.append(timer)
            timer.start()
        else:
            self.dovecot.deliver(user, message)
