"""The private Dovecot of tests/dovecot.py behaves as documented, proved with the stdlib's
imaplib, poplib and smtplib.LMTP against the real server, TLS verified against a test CA."""

from __future__ import annotations

import contextlib
import imaplib
import poplib
import smtplib
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
import trustme

from tests import dovecot as dovecot_module
from tests.dovecot import DovecotInstance, dovecot_fixture

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

T = 5.0  # client socket timeout
USERS = {
    "alice": "alice-secret",  # IMAP
    "bob": "b0b:with spaces & colons",  # POP3 (a password that would break a naive passwd-file)
    "carol": "carol-secret",  # Junk/Spam
    "dave@example.org": "dave-secret",  # a username with a domain
}


@dataclass(frozen=True)
class Tls:
    ca: Path
    cert: Path
    key: Path

    def client(self) -> ssl.SSLContext:
        """Verifies the server against the test CA, hostname included."""
        return ssl.create_default_context(cafile=str(self.ca))


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    directory = tmp_path_factory.mktemp("dovecot-pki")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost", "127.0.0.2")
    files = Tls(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    ca.cert_pem.write_to_path(str(files.ca))
    # The chain (leaf first) in one file, the key in another.
    files.cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(files.key))
    return files


@pytest.fixture(scope="module")
def mail_tls(tls: Tls) -> tuple[Path, Path]:
    return tls.cert, tls.key


dovecot = dovecot_fixture(USERS, certificates="mail_tls", scope="module")


def probe(token: str, subject: str = "probe") -> bytes:
    message = EmailMessage()
    message["From"] = "monitor@example.test"
    message["To"] = "alice@example.test"
    message["Subject"] = subject
    message["X-Probe-Token"] = token
    message.set_content(f"body of {token}\n")
    return message.as_bytes()


def new_token() -> str:
    return uuid.uuid4().hex


@contextlib.contextmanager
def imaps(instance: DovecotInstance, tls: Tls, user: str) -> Iterator[imaplib.IMAP4_SSL]:
    client = imaplib.IMAP4_SSL(
        "127.0.0.1", instance.ports["imaps"], ssl_context=tls.client(), timeout=T
    )
    try:
        client.login(user, USERS[user])
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.logout()


def search(client: imaplib.IMAP4, token: str) -> list[str]:
    """The sequence numbers of the messages whose X-Probe-Token header contains `token`."""
    status, data = client.search(None, "HEADER", "X-Probe-Token", token)
    assert status == "OK", data
    found: bytes = data[0]
    return found.decode().split()


def pop3s(instance: DovecotInstance, tls: Tls, user: str) -> poplib.POP3_SSL:
    client = poplib.POP3_SSL("127.0.0.1", instance.ports["pop3s"], context=tls.client(), timeout=T)
    client.user(user)
    client.pass_(USERS[user])
    return client


# --- start-up, ports, greetings -----------------------------------------------------------------


def test_every_listener_has_its_own_loopback_port(dovecot: DovecotInstance) -> None:
    assert set(dovecot.ports) == {"imap", "imaps", "pop3", "pop3s", "lmtp"}
    assert len(set(dovecot.ports.values())) == 5
    # None of the well-known ports a system Dovecot would take.
    assert not set(dovecot.ports.values()) & {24, 110, 143, 993, 995}
    assert dovecot.startup_seconds is not None
    assert dovecot.startup_seconds < 5


def test_every_port_greets(dovecot: DovecotInstance, tls: Tls) -> None:
    def first_line(port: int, *, implicit_tls: bool) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=T) as raw:
            if implicit_tls:
                with tls.client().wrap_socket(raw, server_hostname="127.0.0.1") as sock:
                    return sock.makefile("rb").readline()
            return raw.makefile("rb").readline()

    imap = first_line(dovecot.ports["imap"], implicit_tls=False)
    assert imap.startswith(b"* OK ")
    assert b"STARTTLS" in imap
    assert first_line(dovecot.ports["imaps"], implicit_tls=True).startswith(b"* OK ")
    assert first_line(dovecot.ports["pop3"], implicit_tls=False).startswith(b"+OK ")
    assert first_line(dovecot.ports["pop3s"], implicit_tls=True).startswith(b"+OK ")
    assert first_line(dovecot.ports["lmtp"], implicit_tls=False).startswith(b"220 ")


# --- IMAP ---------------------------------------------------------------------------------------


def test_imaps_login_with_the_ca_verified(dovecot: DovecotInstance, tls: Tls) -> None:
    with imaps(dovecot, tls, "alice") as client:
        status, _ = client.select("INBOX")
        assert status == "OK"
        assert client.sock.version() in ("TLSv1.2", "TLSv1.3")  # type: ignore[attr-defined]
    # The same server is refused by a client that does not trust the test CA.
    with pytest.raises(ssl.SSLCertVerificationError):
        imaplib.IMAP4_SSL(
            "127.0.0.1",
            dovecot.ports["imaps"],
            ssl_context=ssl.create_default_context(),
            timeout=T,
        )


def _login_command(client: imaplib.IMAP4, user: str, password: str) -> None:
    client.login(user, password)


def _authenticate_plain(client: imaplib.IMAP4, user: str, password: str) -> None:
    client.authenticate("PLAIN", lambda _: f"\0{user}\0{password}".encode())


def _authenticate_login(client: imaplib.IMAP4, user: str, password: str) -> None:
    # SASL LOGIN: the server asks for the username, then for the password.
    answers = iter([user.encode(), password.encode()])
    client.authenticate("LOGIN", lambda _: next(answers))


@pytest.mark.parametrize(
    "login",
    [_login_command, _authenticate_plain, _authenticate_login],
    ids=["LOGIN", "AUTHENTICATE PLAIN", "AUTHENTICATE LOGIN"],
)
def test_imap_starttls_then_login(
    dovecot: DovecotInstance, tls: Tls, login: Callable[[imaplib.IMAP4, str, str], None]
) -> None:
    client = imaplib.IMAP4("127.0.0.1", dovecot.ports["imap"], timeout=T)
    try:
        assert "STARTTLS" in client.capabilities
        client.starttls(ssl_context=tls.client())
        status, capabilities = client.capability()
        assert status == "OK"
        assert b"AUTH=PLAIN" in capabilities[0]
        assert b"AUTH=LOGIN" in capabilities[0]
        login(client, "alice", USERS["alice"])
        assert client.state == "AUTH"
        assert client.select("INBOX")[0] == "OK"
    finally:
        client.logout()


@pytest.mark.parametrize(
    "login",
    [_login_command, _authenticate_plain, _authenticate_login],
    ids=["LOGIN", "AUTHENTICATE PLAIN", "AUTHENTICATE LOGIN"],
)
def test_imap_password_refused_without_tls(
    dovecot: DovecotInstance, login: Callable[[imaplib.IMAP4, str, str], None]
) -> None:
    """From 127.0.0.1 Dovecot takes the connection as "secured"; the passdb still refuses
    a password that did not come over TLS."""
    client = imaplib.IMAP4("127.0.0.1", dovecot.ports["imap"], timeout=T)
    try:
        with pytest.raises(imaplib.IMAP4.error):
            login(client, "alice", USERS["alice"])
        assert client.state == "NONAUTH"
    finally:
        client.shutdown()


def test_imap_wrong_password_refused(dovecot: DovecotInstance, tls: Tls) -> None:
    client = imaplib.IMAP4_SSL(
        "127.0.0.1", dovecot.ports["imaps"], ssl_context=tls.client(), timeout=T
    )
    try:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            client.login("alice", "not-the-password")
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            client.login("nobody-here", "whatever")
        # The penalty is off: the right password is accepted at once after failures.
        began = time.monotonic()
        client.login("alice", USERS["alice"])
        assert time.monotonic() - began < 1.5
    finally:
        client.logout()


def test_lmtp_delivery_found_by_header_search_then_expunged(
    dovecot: DovecotInstance, tls: Tls
) -> None:
    token = new_token()
    with smtplib.LMTP("127.0.0.1", dovecot.ports["lmtp"], timeout=T) as lmtp:
        refused = lmtp.sendmail("monitor@example.test", [dovecot.address("alice")], probe(token))
    assert refused == {}
    with imaps(dovecot, tls, "alice") as client:
        assert client.select("INBOX")[0] == "OK"
        found = search(client, token)
        assert len(found) == 1
        status, data = client.fetch(found[0], "(BODY.PEEK[HEADER.FIELDS (X-Probe-Token)])")
        assert status == "OK"
        part = data[0]
        assert isinstance(part, tuple)
        assert token.encode() in part[1]
        assert client.store(found[0], "+FLAGS", r"(\Deleted)")[0] == "OK"
        assert client.expunge()[0] == "OK"
        assert search(client, token) == []
    assert not any(token.encode() in message for message in dovecot.messages("alice"))


def test_lmtp_delivery_to_a_plus_address_and_a_full_username(dovecot: DovecotInstance) -> None:
    """Postfix hands LMTP the full address: "alice+tag@any.domain" is alice, and a user whose
    name is an address gets mail at exactly that address."""
    first, second = new_token(), new_token()
    with smtplib.LMTP("127.0.0.1", dovecot.ports["lmtp"], timeout=T) as lmtp:
        assert lmtp.sendmail("m@example.test", ["alice+probe@other.test"], probe(first)) == {}
        assert lmtp.sendmail("m@example.test", ["dave@example.org"], probe(second)) == {}
    assert any(first.encode() in message for message in dovecot.messages("alice"))
    assert any(second.encode() in message for message in dovecot.messages("dave@example.org"))


def test_lmtp_refuses_an_unknown_recipient(dovecot: DovecotInstance) -> None:
    with (
        smtplib.LMTP("127.0.0.1", dovecot.ports["lmtp"], timeout=T) as lmtp,
        pytest.raises(smtplib.SMTPRecipientsRefused) as refused,
    ):
        lmtp.sendmail("m@example.test", ["nobody-here@example.test"], probe(new_token()))
    code, _ = refused.value.recipients["nobody-here@example.test"]
    assert code == 550


def test_message_dropped_into_junk_is_found_there(dovecot: DovecotInstance, tls: Tls) -> None:
    token = new_token()
    path = dovecot.deliver("carol", probe(token, subject="junk"), folder="Junk")
    assert path.parent == dovecot.maildir("carol", "Junk") / "new"
    assert any(token.encode() in message for message in dovecot.messages("carol", "Junk"))
    with imaps(dovecot, tls, "carol") as client:
        status, listing = client.list()
        assert status == "OK"
        names = b"\n".join(listing)  # type: ignore[arg-type]
        assert b"\\Junk" in names  # the special-use flag of Junk
        assert b" Spam" in names
        assert client.select("INBOX")[0] == "OK"
        assert search(client, token) == []
        assert client.select("Junk")[0] == "OK"
        assert len(search(client, token)) == 1


def test_message_dropped_into_inbox_and_spam(dovecot: DovecotInstance, tls: Tls) -> None:
    inbox, spam = new_token(), new_token()
    dovecot.deliver("carol", probe(inbox))
    dovecot.deliver("carol", probe(spam), folder="Spam")
    with imaps(dovecot, tls, "carol") as client:
        client.select("INBOX")
        assert len(search(client, inbox)) == 1
        assert search(client, spam) == []
        client.select("Spam")
        assert len(search(client, spam)) == 1


def test_doveadm_sees_the_same_mailboxes(dovecot: DovecotInstance) -> None:
    token = new_token()
    dovecot.deliver("carol", probe(token), folder="Junk")
    listed = dovecot.doveadm("mailbox", "list", "-u", "carol").stdout.split()
    assert sorted(listed) == ["INBOX", "Junk", "Spam"]
    found = dovecot.doveadm(
        "search", "-u", "carol", "mailbox", "Junk", "HEADER", "X-Probe-Token", token
    ).stdout.splitlines()
    assert len(found) == 1


def test_messages_come_back_in_delivery_order(dovecot: DovecotInstance) -> None:
    tokens = [new_token() for _ in range(3)]
    for token in tokens:
        dovecot.deliver("carol", probe(token), folder="Spam")
    stored = dovecot.messages("carol", "Spam")[-3:]
    assert all(token.encode() in message for token, message in zip(tokens, stored, strict=True))
    assert all(b"\r\n" not in message for message in stored)  # stored with LF, as Dovecot does


def test_unknown_folder_or_user_is_an_error(dovecot: DovecotInstance) -> None:
    with pytest.raises(KeyError):
        dovecot.deliver("carol", probe(new_token()), folder="Trash")
    with pytest.raises(KeyError):
        dovecot.messages("nobody-here")


# --- POP3 ---------------------------------------------------------------------------------------


def test_pop3s_user_pass_top_headers_only_then_dele(dovecot: DovecotInstance, tls: Tls) -> None:
    token = new_token()
    dovecot.deliver("bob", probe(token))
    client = pop3s(dovecot, tls, "bob")
    try:
        count, _ = client.stat()
        assert count >= 1
        # The message with the token, by its headers alone.
        found = None
        for number in range(1, count + 1):
            response, lines, _ = client.top(number, 0)
            assert response.startswith(b"+OK")
            if f"X-Probe-Token: {token}".encode() in lines:
                found = number, lines
        assert found is not None
        number, lines = found
        assert lines[-1] == b""  # the blank line that ends the headers ...
        assert f"body of {token}".encode() not in b"\n".join(lines)  # ... and no body
        assert client.dele(number).startswith(b"+OK")
    finally:
        client.quit()  # the deletion takes effect at QUIT (UPDATE state)
    assert not any(token.encode() in message for message in dovecot.messages("bob"))


def test_pop3_stls_then_user_pass(dovecot: DovecotInstance, tls: Tls) -> None:
    client = poplib.POP3("127.0.0.1", dovecot.ports["pop3"], timeout=T)
    try:
        assert "STLS" in client.capa()
        client.stls(context=tls.client())
        client.user("bob")
        assert client.pass_(USERS["bob"]).startswith(b"+OK")
        client.stat()
    finally:
        client.quit()


def test_pop3_password_refused_without_tls_or_when_wrong(
    dovecot: DovecotInstance, tls: Tls
) -> None:
    plain = poplib.POP3("127.0.0.1", dovecot.ports["pop3"], timeout=T)
    try:
        plain.user("bob")  # accepted from 127.0.0.1 (refused from another address)
        with pytest.raises(poplib.error_proto):
            plain.pass_(USERS["bob"])
    finally:
        plain.close()
    secure = poplib.POP3_SSL("127.0.0.1", dovecot.ports["pop3s"], context=tls.client(), timeout=T)
    try:
        secure.user("bob")
        with pytest.raises(poplib.error_proto):
            secure.pass_("not-the-password")
    finally:
        secure.close()


# --- the log, other instances, cleanup ----------------------------------------------------------


def test_log_records_the_sessions(dovecot: DovecotInstance, tls: Tls) -> None:
    with imaps(dovecot, tls, "alice"):
        pass
    log = dovecot.log_text()
    assert "starting up for imap, pop3, lmtp" in log
    assert "imap-login: Info: Login: user=<alice>" in log
    assert "Fatal:" not in log
    assert dovecot.log_path.parent == dovecot.directory


def _can_bind(address: str) -> bool:
    try:
        with socket.socket() as sock:
            sock.bind((address, 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _can_bind("127.0.0.2"), reason="127.0.0.2 is not a local address here")
def test_on_another_loopback_address_login_is_disabled_before_tls(tls: Tls) -> None:
    """The client (127.0.0.1) and server (127.0.0.2) addresses differ: Dovecot behaves as in
    production, LOGINDISABLED and PRIVACYREQUIRED until STARTTLS."""
    with DovecotInstance({"alice": "secret"}, tls.cert, tls.key, host="127.0.0.2") as instance:
        client = imaplib.IMAP4("127.0.0.2", instance.ports["imap"], timeout=T)
        try:
            assert "LOGINDISABLED" in client.capabilities
            with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
                client.login("alice", "secret")
            client.starttls(ssl_context=tls.client())
            client.login("alice", "secret")
        finally:
            client.logout()


def test_stop_leaves_nothing_behind(tls: Tls) -> None:
    instance = DovecotInstance({"eve": "secret"}, tls.cert, tls.key, folders=["Junk"])
    with instance:
        assert instance.running
        assert instance.process is not None
        pid = instance.process.pid
        directory = instance.directory
        ports = dict(instance.ports)
        assert directory is not None
        assert (directory / "run" / "master.pid").read_text().strip() == str(pid)
        assert dovecot_module.process_group_alive(pid)
        assert instance.maildir("eve", "Junk").is_dir()
        with pytest.raises(KeyError):
            instance.maildir("eve", "Spam")
    assert not instance.running
    assert not dovecot_module.process_group_alive(pid)
    assert not directory.exists()
    for port in ports.values():
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=T).close()


def test_a_port_taken_meanwhile_is_retried(tls: Tls, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process may bind a port between its choice and Dovecot's bind: start again
    with other ports."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        real = dovecot_module.free_port
        calls = iter(range(1_000))
        monkeypatch.setattr(
            dovecot_module, "free_port", lambda host: busy if next(calls) == 0 else real(host)
        )
        with DovecotInstance({"eve": "secret"}, tls.cert, tls.key) as instance:
            assert busy not in instance.ports.values()
            assert instance.running
            assert next(calls) >= 10  # two rounds of five ports: it did start again


def test_bad_parameters_are_refused_before_starting(tls: Tls) -> None:
    with pytest.raises(ValueError, match="username"):
        DovecotInstance({"Alice": "x"}, tls.cert, tls.key)
    with pytest.raises(ValueError, match="username"):
        DovecotInstance({"a:b": "x"}, tls.cert, tls.key)
    with pytest.raises(ValueError, match="password"):
        DovecotInstance({"alice": "x\ny"}, tls.cert, tls.key)
    with pytest.raises(ValueError, match="folder"):
        DovecotInstance({"alice": "x"}, tls.cert, tls.key, folders=["a.b"])


def test_missing_dovecot_skips_locally_and_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(dovecot_module, "_REQUIRED", {tmp_path / "no-such-lmtp": "dovecot-lmtpd"})
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="dovecot-lmtpd"):
        dovecot_module.require_dovecot()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        dovecot_module.require_dovecot()
