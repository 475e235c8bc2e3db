"""The receive side of a round trip against a real Dovecot: IMAP (IMAPS, STARTTLS) and
POP3 (POP3S, STLS) find the run's message by its token, delete it and the leftovers of
earlier runs of the same check, and touch nothing else; junk folders, a wrong password, a
server down and a certificate that does not verify each end as a classified look."""

from __future__ import annotations

import asyncio
import re
import socketserver
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from email.utils import formatdate
from pathlib import Path

import pytest

from smtp_checks.shared.mailbox.imap import mailbox_name
from smtp_checks.shared.mailbox.look import look_for
from smtp_checks.shared.mailbox.spec import MailboxLook, MailboxSpec, ReceiveProtocol, Wanted
from smtp_checks.shared.probe.failures import FailureKind
from smtp_checks.shared.probe.message import build_message
from smtp_checks.shared.probe.spec import MessageSpec, TlsMode, TlsSettings
from tests.dovecot import DovecotInstance, dovecot_fixture, free_port
from tests.smtp_servers import Pki

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

USERS = {"alice": "alice-secret", "bob": 'b0b "quoted" \\ pass'}
CHECK = "<mx1/roundtrip>"


@pytest.fixture(scope="module")
def mail_tls(pki: Pki) -> tuple[Path, Path]:
    return pki.cert_paths["trusted"], pki.key_paths["trusted"]


dovecot = dovecot_fixture(USERS, certificates="mail_tls", scope="module")


def probe_mail(token: str, check: str = CHECK, *, age: float = 0.0) -> bytes:
    """A round trip's message, dated `age` seconds ago."""
    spec = MessageSpec(
        sender="monitor@example.test", to=("alice@example.test",), token=token, check_tag=check
    )
    message = build_message(spec, "example.test").removesuffix(b".\r\n")
    date = formatdate(time.time() - age).encode()
    return re.sub(rb"^Date: [^\r\n]*", b"Date: " + date, message, count=1, flags=re.MULTILINE)


def other_mail(subject: str) -> bytes:
    return (
        f"From: someone@example.test\r\nTo: alice@example.test\r\nSubject: {subject}\r\n"
        "X-Smtp-Checks-Check: <amx1/roundtrip>\r\n\r\nnot ours\r\n"
    ).encode()


def spec_for(
    dovecot: DovecotInstance,
    pki: Pki,
    protocol: ReceiveProtocol,
    tls: TlsMode,
    *,
    user: str = "alice",
    password: str | None = None,
    port: int | None = None,
    ca: str | None = None,
) -> MailboxSpec:
    listener = {TlsMode.IMPLICIT: "s", TlsMode.STARTTLS: ""}[tls]
    return MailboxSpec(
        protocol=protocol,
        host="127.0.0.1",
        port=port or dovecot.ports[f"{protocol.value}{listener}"],
        username=user,
        password=USERS[user] if password is None else password,
        tls=TlsSettings(mode=tls, ca_file=ca or str(pki.ca_pem_path)),
        timeout=10,
        junk=("Junk", "Spam") if protocol is ReceiveProtocol.IMAP else (),
    )


def look(spec: MailboxSpec, token: str) -> MailboxLook:
    return asyncio.run(look_for(spec, Wanted(token, CHECK)))


def subjects(dovecot: DovecotInstance, user: str, folder: str = "INBOX") -> list[bytes]:
    return [m.split(b"Subject: ", 1)[1].split(b"\n", 1)[0] for m in dovecot.messages(user, folder)]


@pytest.mark.parametrize(
    ("protocol", "tls"),
    [
        (ReceiveProtocol.IMAP, TlsMode.IMPLICIT),
        (ReceiveProtocol.IMAP, TlsMode.STARTTLS),
        (ReceiveProtocol.POP3, TlsMode.IMPLICIT),
        (ReceiveProtocol.POP3, TlsMode.STARTTLS),
    ],
)
def test_finds_the_run_message_deletes_it_and_the_leftovers_and_nothing_else(
    dovecot: DovecotInstance, pki: Pki, protocol: ReceiveProtocol, tls: TlsMode
) -> None:
    token, earlier, beside = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    dovecot.deliver("alice", other_mail("keep me"))
    dovecot.deliver("alice", probe_mail(earlier, age=3600))  # an earlier run's, never deleted
    dovecot.deliver("alice", probe_mail(beside, age=5))  # a run beside this one: its own
    dovecot.deliver("alice", probe_mail(token))

    found = look(spec_for(dovecot, pki, protocol, tls), token)

    assert found.failure is None
    assert found.found_in == "INBOX"
    assert found.seen_at is not None
    assert found.cleaned == 1
    assert subjects(dovecot, "alice") == [b"keep me", f"smtp-checks probe [{beside}]".encode()]
    again = look(spec_for(dovecot, pki, protocol, tls), token)
    assert again.failure is None and not again.found and again.cleaned == 0
    empty_inbox(dovecot, "alice")  # for the next protocol


def empty_inbox(dovecot: DovecotInstance, user: str) -> None:
    for sub in ("cur", "new"):
        for path in (dovecot.maildir(user) / sub).iterdir():
            path.unlink()


def test_not_there_yet_is_a_look_that_found_nothing(dovecot: DovecotInstance, pki: Pki) -> None:
    found = look(spec_for(dovecot, pki, ReceiveProtocol.IMAP, TlsMode.IMPLICIT), "0" * 32)
    assert found.failure is None and found.found_in is None and found.seen_at is None


def test_a_message_in_junk_is_found_there(dovecot: DovecotInstance, pki: Pki) -> None:
    token = uuid.uuid4().hex
    dovecot.deliver("alice", probe_mail(token), folder="Spam")
    found = look(spec_for(dovecot, pki, ReceiveProtocol.IMAP, TlsMode.STARTTLS), token)
    assert found.found_in == "Spam"
    assert dovecot.messages("alice", "Spam") == []


def test_received_headers_give_their_dates_oldest_first(dovecot: DovecotInstance, pki: Pki) -> None:
    token = uuid.uuid4().hex
    hops = (
        b"Received: from b by c; Thu, 03 Dec 2026 10:00:07 +0000\r\n"
        b"Received: from a by b; Thu, 03 Dec 2026 10:00:02 +0000\r\n"
    )
    dovecot.deliver("alice", hops + probe_mail(token))
    for protocol in ReceiveProtocol:
        if protocol is ReceiveProtocol.POP3:
            dovecot.deliver("alice", hops + probe_mail(token))
        found = look(spec_for(dovecot, pki, protocol, TlsMode.IMPLICIT), token)
        assert found.received[-2:] == (1796292002.0, 1796292007.0), protocol


@pytest.mark.parametrize("protocol", list(ReceiveProtocol))
def test_a_wrong_password_is_an_auth_failure_without_the_password(
    dovecot: DovecotInstance, pki: Pki, protocol: ReceiveProtocol
) -> None:
    spec = spec_for(dovecot, pki, protocol, TlsMode.IMPLICIT, password="not-the-password")
    found = look(spec, "0" * 32)
    assert found.failure is not None
    assert found.failure.kind is FailureKind.AUTH
    assert "not-the-password" not in found.failure.detail


def test_a_password_with_quotes_and_backslashes_logs_in(dovecot: DovecotInstance, pki: Pki) -> None:
    spec = spec_for(dovecot, pki, ReceiveProtocol.IMAP, TlsMode.IMPLICIT, user="bob")
    assert look(spec, "0" * 32).failure is None


def test_the_server_down_is_a_refused_connection(dovecot: DovecotInstance, pki: Pki) -> None:
    spec = spec_for(dovecot, pki, ReceiveProtocol.IMAP, TlsMode.IMPLICIT, port=free_port())
    found = look(spec, "0" * 32)
    assert found.failure is not None and found.failure.kind is FailureKind.REFUSED


def test_a_certificate_of_another_ca_does_not_verify(
    dovecot: DovecotInstance, pki: Pki, tmp_path: Path
) -> None:
    import trustme

    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    for tls in (TlsMode.IMPLICIT, TlsMode.STARTTLS):
        spec = spec_for(dovecot, pki, ReceiveProtocol.POP3, tls, ca=str(other))
        found = look(spec, "0" * 32)
        assert found.failure is not None and found.failure.kind is FailureKind.CERTIFICATE, tls


class _Hostile(socketserver.BaseRequestHandler):
    """Answers every connection with `script` (bytes, or a generator of chunks)."""

    def handle(self) -> None:
        if self.server.script is None:  # type: ignore[attr-defined]
            while self.request.send(b"* " + b"x" * 4096):  # an endless line
                pass
        self.request.sendall(self.server.script)  # type: ignore[attr-defined]
        time.sleep(2)


@pytest.fixture
def hostile() -> Iterator[Callable[[bytes | None], int]]:
    servers: list[socketserver.ThreadingTCPServer] = []

    def start(script: bytes | None) -> int:
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Hostile)
        server.daemon_threads = True
        server.script = script  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return int(server.server_address[1])

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("protocol", "script", "kind", "detail"),
    [
        (ReceiveProtocol.IMAP, b"220 mx.example.test ESMTP\r\n", FailureKind.PROTOCOL,
         "IMAP greeting: 220 mx.example.test ESMTP"),
        (ReceiveProtocol.POP3, b"-ERR go away\x1b[31m|forged\r\n", FailureKind.PROTOCOL,
         "POP3 greeting: -ERR go away [31m/forged"),
        (ReceiveProtocol.IMAP, b"* OK hi\r\n", FailureKind.TIMEOUT, "timeout after 1s"),
        (ReceiveProtocol.IMAP, None, FailureKind.PROTOCOL, "a line longer than 65536 bytes"),
    ],
)  # fmt: skip
def test_a_hostile_server_is_a_classified_sanitised_failure(
    hostile: Callable[[bytes | None], int],
    protocol: ReceiveProtocol,
    script: bytes | None,
    kind: FailureKind,
    detail: str,
) -> None:
    spec = MailboxSpec(
        protocol=protocol, host="127.0.0.1", port=hostile(script), username="u", password="a-password",
        tls=TlsSettings(mode=TlsMode.NONE), timeout=1,
    )  # fmt: skip
    found = look(spec, "0" * 32)
    assert found.failure is not None
    assert (found.failure.kind, found.failure.detail[: len(detail)]) == (kind, detail)
    assert found.time < 2


def test_the_mailbox_itself_must_exist_a_junk_folder_need_not(
    dovecot: DovecotInstance, pki: Pki
) -> None:
    spec = spec_for(dovecot, pki, ReceiveProtocol.IMAP, TlsMode.IMPLICIT)
    found = look(replace(spec, mailbox="Nowhere"), "0" * 32)
    assert found.failure is not None and found.failure.kind is FailureKind.REJECTED
    assert found.failure.detail.startswith("SELECT refused: NO ")
    assert look(replace(spec, junk=("Nowhere", "Junk")), "0" * 32).failure is None


def test_clear_text_after_the_go_ahead_for_tls_is_refused(
    hostile: Callable[[bytes | None], int],
) -> None:
    # A man in the middle answers STLS and slips a forged answer in before the handshake.
    port = hostile(b"+OK POP3 ready\r\n+OK Begin TLS\r\n+OK forged\r\n")
    spec = MailboxSpec(
        protocol=ReceiveProtocol.POP3, host="127.0.0.1", port=port, username="u",
        password="a-password", tls=TlsSettings(mode=TlsMode.STARTTLS), timeout=2,
    )  # fmt: skip
    found = look(spec, "0" * 32)
    assert found.failure is not None and found.failure.kind is FailureKind.PROTOCOL
    assert found.failure.detail == "data after the go-ahead for TLS, in clear"


@pytest.mark.parametrize(
    ("folder", "wire"),
    [("Junk", '"Junk"'), ("Courrier indésirable", '"Courrier ind&AOk-sirable"'),
     ("R&D", '"R&-D"'), ("日本語", '"&ZeVnLIqe-"')],
)  # fmt: skip
def test_folder_names_go_in_modified_utf7(folder: str, wire: str) -> None:
    assert mailbox_name(folder) == wire


@pytest.fixture(scope="module")
def login_only(mail_tls: tuple[Path, Path]) -> Iterator[DovecotInstance]:
    """A Dovecot that offers SASL LOGIN only (and so disables the LOGIN command)."""
    with DovecotInstance(USERS, *mail_tls, mechanisms=("login",)) as instance:
        yield instance


def test_without_sasl_plain_imap_authenticates_with_sasl_login(
    login_only: DovecotInstance, pki: Pki
) -> None:
    token = uuid.uuid4().hex
    login_only.deliver("bob", probe_mail(token))
    found = look(
        spec_for(login_only, pki, ReceiveProtocol.IMAP, TlsMode.IMPLICIT, user="bob"), token
    )
    assert found.failure is None and found.found_in == "INBOX"
    assert "user=<bob>, method=LOGIN" in login_only.log_text()
    # POP3's USER/PASS is PLAIN to Dovecot: refused, with the server's own words.
    refused = look(
        spec_for(login_only, pki, ReceiveProtocol.POP3, TlsMode.IMPLICIT, user="bob"), token
    )
    assert refused.failure is not None and refused.failure.kind is FailureKind.AUTH
    assert (
        refused.failure.detail == "PASS refused: -ERR [AUTH] Unsupported authentication mechanism."
    )


class _LoginCommandServer(socketserver.StreamRequestHandler):
    """An IMAP server without SASL (no AUTH=): only the LOGIN command, as old servers do.
    Records the lines it gets."""

    def handle(self) -> None:
        heard: list[bytes] = self.server.heard  # type: ignore[attr-defined]
        self.wfile.write(b"* OK ready\r\n")
        for raw in self.rfile:
            heard.append(raw.rstrip(b"\r\n"))
            tag, _, command = raw.decode().strip().partition(" ")
            verb = command.split(" ", 1)[0].upper()
            if verb == "CAPABILITY":
                self.wfile.write(b"* CAPABILITY IMAP4rev1 UIDPLUS\r\n")
            elif verb == "UID":
                self.wfile.write(b"* SEARCH\r\n")
            elif verb == "LOGOUT":
                self.wfile.write(b"* BYE bye\r\n")
            self.wfile.write(f"{tag} OK done\r\n".encode())
            if verb == "LOGOUT":
                return


def test_without_sasl_the_login_command_quotes_the_password() -> None:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _LoginCommandServer)
    server.heard = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        spec = MailboxSpec(
            protocol=ReceiveProtocol.IMAP, host="127.0.0.1", port=server.server_address[1],
            username="bob", password='b0b "quoted" \\ pass', tls=TlsSettings(mode=TlsMode.NONE),
            timeout=5,
        )  # fmt: skip
        found = look(spec, "0" * 32)
    finally:
        server.shutdown()
        server.server_close()
    assert found.failure is None and not found.found
    assert b's2 LOGIN "bob" "b0b \\"quoted\\" \\\\ pass"' in server.heard  # type: ignore[attr-defined]
