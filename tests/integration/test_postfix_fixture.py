"""The private Postfix of tests/postfix.py does what its docstring says (proved with smtplib).

Skipped locally when Postfix is not installed; a failure under CI=true.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import struct
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.postfix import (
    DEFAULT_DOMAIN,
    DEFAULT_HOSTNAME,
    SERVICES,
    Certificates,
    PostfixInstance,
    free_port,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

T = 5.0  # client socket timeout
USER = "monitor@test.example"
PASSWORD = "s3cret-pw"  # a test credential of this throw-away instance
LOCAL = f"someone@{DEFAULT_DOMAIN}"
FOREIGN = "someone@elsewhere.example"
# A documentation address (TEST-NET-2) the PROXY headers claim the client came from.
FORWARDED_V1 = "198.51.100.7"
FORWARDED_V2 = "198.51.100.8"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates(tmp_path_factory.mktemp("postfix-pki"))


@pytest.fixture(scope="module")
def mta(
    postfix_factory: Callable[..., PostfixInstance],
    certificates: Certificates,
) -> PostfixInstance:
    return postfix_factory(
        cert=certificates.cert, key=certificates.key, user=USER, password=PASSWORD
    )


def connect(mta: PostfixInstance, service: str, host: str = "127.0.0.1") -> smtplib.SMTP:
    client = smtplib.SMTP(host, mta.ports[service], local_hostname="probe.test", timeout=T)
    client.ehlo()
    return client


def message(recipient: str, subject: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = f"probe@{DEFAULT_DOMAIN}"
    mail["To"] = recipient
    mail["Subject"] = subject
    mail.set_content("sent by test_postfix_fixture\n")
    return mail


def proxy_v2_tcp4(source: str, destination: str, source_port: int, port: int) -> bytes:
    """A PROXY protocol v2 header: PROXY command, TCP over IPv4."""
    addresses = (
        socket.inet_aton(source)
        + socket.inet_aton(destination)
        + struct.pack("!HH", source_port, port)
    )
    return (
        b"\r\n\r\n\x00\r\nQUIT\n"
        + bytes([0x21, 0x11])
        + struct.pack("!H", len(addresses))
        + addresses
    )


def proxied_session(mta: PostfixInstance, header: bytes) -> list[bytes]:
    """The replies to `header`, then EHLO and QUIT, on the proxy port, one line each."""
    replies: list[bytes] = []
    with socket.create_connection(("127.0.0.1", mta.ports["proxy"]), timeout=T) as sock:
        stream = sock.makefile("rb")
        sock.sendall(header)
        replies.append(stream.readline())
        sock.sendall(b"EHLO probe.test\r\n")
        while True:
            line = stream.readline()
            replies.append(line)
            if not line or line[3:4] == b" ":
                break
        sock.sendall(b"QUIT\r\n")
        replies.append(stream.readline())
    return replies


# -- banners ---------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["plain", "submission", "open_relay"])
def test_every_plain_text_port_answers_220_with_the_host_name(
    mta: PostfixInstance, service: str
) -> None:
    client = smtplib.SMTP(timeout=T)
    code, banner = client.connect("127.0.0.1", mta.ports[service])
    client.quit()
    assert code == 220
    assert banner.startswith(DEFAULT_HOSTNAME.encode())


def test_ports_are_distinct_loopback_ports_and_never_25(mta: PostfixInstance) -> None:
    assert set(mta.ports) == set(SERVICES)
    assert len(set(mta.ports.values())) == len(SERVICES)
    assert 25 not in mta.ports.values()
    assert "inet_interfaces = loopback-only" in mta.postconf("inet_interfaces")


def test_plain_answers_on_ipv6_loopback_on_the_same_port(mta: PostfixInstance) -> None:
    if not mta.ipv6:
        pytest.skip("no IPv6 loopback on this host")
    client = smtplib.SMTP(timeout=T)
    code, banner = client.connect("::1", mta.ports["plain"])
    client.quit()
    assert code == 220
    assert banner.startswith(DEFAULT_HOSTNAME.encode())
    assert "connect from unknown[::1]" in mta.log_text()


def test_smtps_is_implicit_tls_with_the_given_certificate(
    mta: PostfixInstance, certificates: Certificates
) -> None:
    context = certificates.client_context()
    with smtplib.SMTP_SSL("127.0.0.1", mta.ports["smtps"], context=context, timeout=T) as client:
        code, _ = client.ehlo("probe.test")
        assert code == 250
        assert isinstance(client.sock, ssl.SSLSocket)
        assert "starttls" not in client.esmtp_features
        assert {"PLAIN", "LOGIN"} <= set(client.esmtp_features["auth"].split())
        code, _ = client.login(USER, PASSWORD)
        assert code == 235


def test_smtps_speaks_no_plain_text_smtp(mta: PostfixInstance) -> None:
    with socket.create_connection(("127.0.0.1", mta.ports["smtps"]), timeout=T) as sock:
        sock.sendall(b"EHLO probe.test\r\n")
        try:
            reply = sock.recv(1024)
        except ConnectionResetError:
            reply = b""
    # A TLS alert record (content type 21) or a closed connection, never an SMTP reply.
    assert reply[:1] in (b"", b"\x15")


# -- STARTTLS and AUTH ---------------------------------------------------------------


def test_plain_offers_starttls_verified_against_the_test_ca_and_no_auth(
    mta: PostfixInstance, certificates: Certificates
) -> None:
    with connect(mta, "plain") as client:
        assert client.has_extn("starttls")
        assert not client.has_extn("auth")
        code, _ = client.starttls(context=certificates.client_context())
        assert code == 220
        assert isinstance(client.sock, ssl.SSLSocket)
        assert client.sock.getpeercert() is not None  # verified, not just encrypted
        client.ehlo()
        assert not client.has_extn("auth")
        assert not client.has_extn("starttls")


def test_plain_starttls_fails_verification_without_the_test_ca(mta: PostfixInstance) -> None:
    with connect(mta, "plain") as client, pytest.raises(ssl.SSLCertVerificationError):
        client.starttls(context=ssl.create_default_context())


def test_submission_requires_starttls_before_mail_and_hides_auth(mta: PostfixInstance) -> None:
    with connect(mta, "submission") as client:
        assert client.has_extn("starttls")
        assert not client.has_extn("auth")
        code, reply = client.mail("probe@test.example")
        assert code == 530
        assert b"STARTTLS" in reply


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_submission_auth_after_starttls(
    mta: PostfixInstance, certificates: Certificates, mechanism: str
) -> None:
    with connect(mta, "submission") as client:
        client.starttls(context=certificates.client_context())
        client.ehlo()
        assert {"PLAIN", "LOGIN"} <= set(client.esmtp_features["auth"].split())
        client.user, client.password = USER, PASSWORD
        authobject = client.auth_plain if mechanism == "PLAIN" else client.auth_login
        code, reply = client.auth(mechanism, authobject)
        assert code == 235, reply
        # Authenticated: relaying to any domain is allowed (and discarded, not sent).
        assert client.mail(f"probe@{DEFAULT_DOMAIN}")[0] == 250
        assert client.rcpt(FOREIGN)[0] == 250


def test_submission_rejects_a_wrong_password_with_535(
    mta: PostfixInstance, certificates: Certificates
) -> None:
    with connect(mta, "submission") as client:
        client.starttls(context=certificates.client_context())
        client.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            client.login(USER, "not-the-password")
        assert refused.value.smtp_code == 535


def test_submission_refuses_unauthenticated_relay_and_local_mail(
    mta: PostfixInstance, certificates: Certificates
) -> None:
    with connect(mta, "submission") as client:
        client.starttls(context=certificates.client_context())
        client.ehlo()
        assert client.mail(f"probe@{DEFAULT_DOMAIN}")[0] == 250
        code, reply = client.rcpt(FOREIGN)
        assert (code, b"Relay access denied" in reply) == (554, True)
        code, _ = client.rcpt(LOCAL)
        assert code == 554


# -- relaying and delivery -----------------------------------------------------------


def test_plain_refuses_relay_without_auth(mta: PostfixInstance) -> None:
    with connect(mta, "plain") as client:
        client.mail(f"probe@{DEFAULT_DOMAIN}")
        code, reply = client.rcpt(FOREIGN)
    assert code == 554
    assert b"5.7.1" in reply
    assert b"Relay access denied" in reply


def test_proxy_refuses_relay_after_a_v1_header(mta: PostfixInstance) -> None:
    with socket.create_connection(("127.0.0.1", mta.ports["proxy"]), timeout=T) as sock:
        stream = sock.makefile("rb")
        sock.sendall(b"PROXY TCP4 127.0.0.1 127.0.0.1 12345 25\r\n")
        assert stream.readline().startswith(b"220 ")
        for command in (b"HELO probe.test", f"MAIL FROM:<probe@{DEFAULT_DOMAIN}>".encode()):
            sock.sendall(command + b"\r\n")
            assert stream.readline().startswith(b"250 ")
        sock.sendall(f"RCPT TO:<{FOREIGN}>\r\n".encode())
        reply = stream.readline()
        sock.sendall(b"QUIT\r\n")
    assert reply.startswith(b"554 5.7.1 ")
    assert b"Relay access denied" in reply


def test_open_relay_accepts_any_domain_without_auth_and_keeps_it_local(
    mta: PostfixInstance,
) -> None:
    with connect(mta, "open_relay") as client:
        assert not client.has_extn("auth")
        refused = client.send_message(message(FOREIGN, "open relay"))
    assert refused == {}
    line = mta.wait_for_log(r"to=<someone@elsewhere\.example>.*status=(\w+) \((.*)\)$")
    assert line.group(1) == "sent"
    assert "discarded" in line.group(2)
    assert "relay=none" in line.group(0)


def test_mail_for_the_test_domain_lands_in_the_maildir(mta: PostfixInstance) -> None:
    before = len(mta.message_files())
    subject = "delivered to the maildir"
    with connect(mta, "plain") as client:
        assert client.send_message(message(LOCAL, subject)) == {}
    delivered = mta.wait_for_messages(before + 1)
    assert any(mail["Subject"] == subject for mail in delivered)
    assert all(path.is_relative_to(mta.directory) for path in mta.message_files())


# -- PROXY protocol --------------------------------------------------------------------


def test_proxy_v1_header_is_accepted_and_its_client_address_logged(
    mta: PostfixInstance,
) -> None:
    header = f"PROXY TCP4 {FORWARDED_V1} 127.0.0.1 12345 25\r\n".encode()
    replies = proxied_session(mta, header)
    assert replies[0].startswith(b"220 " + DEFAULT_HOSTNAME.encode())
    assert replies[-2].startswith(b"250 ")
    assert replies[-1].startswith(b"221 ")
    mta.wait_for_log(rf"postfix/proxy/smtpd\[\d+\]: connect from unknown\[{FORWARDED_V1}\]")


def test_proxy_v2_header_is_accepted_and_its_client_address_logged(
    mta: PostfixInstance,
) -> None:
    replies = proxied_session(mta, proxy_v2_tcp4(FORWARDED_V2, "127.0.0.1", 23456, 25))
    assert replies[0].startswith(b"220 ")
    assert replies[-1].startswith(b"221 ")
    mta.wait_for_log(rf"postfix/proxy/smtpd\[\d+\]: connect from unknown\[{FORWARDED_V2}\]")


def test_plain_port_takes_no_proxy_header(mta: PostfixInstance) -> None:
    with connect(mta, "plain") as client:
        code, _ = client.docmd("PROXY", f"TCP4 {FORWARDED_V1} 127.0.0.1 12345 25")
    assert code >= 500


# -- LMTP and life cycle ---------------------------------------------------------------


@pytest.fixture
def lmtp_server() -> Iterator[tuple[int, list[Any]]]:
    """An aiosmtpd LMTP server on a free loopback port: (port, envelopes received)."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.lmtp import LMTP

    received: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope)
            return "250 2.0.0 delivered"

    class LmtpController(Controller):
        def factory(self) -> LMTP:
            return LMTP(self.handler)

    port = free_port()
    controller = LmtpController(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, received
    finally:
        controller.stop()


def test_lmtp_parameter_sends_the_test_domain_to_that_server(
    certificates: Certificates, lmtp_server: tuple[int, list[Any]]
) -> None:
    port, received = lmtp_server
    with PostfixInstance(
        cert=certificates.cert,
        key=certificates.key,
        user=USER,
        password=PASSWORD,
        lmtp=("127.0.0.1", port),
        ipv6=False,
    ) as lmtp_mta:
        with connect(lmtp_mta, "plain") as client:
            assert client.send_message(message(LOCAL, "via lmtp")) == {}
        lmtp_mta.wait_for_log(rf"to=<{LOCAL}>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:{port}.*sent")
        assert [envelope.rcpt_tos for envelope in received] == [[LOCAL]]
        assert lmtp_mta.message_files() == []


def test_stop_ends_every_process_and_removes_the_directory(certificates: Certificates) -> None:
    instance = PostfixInstance(
        cert=certificates.cert, key=certificates.key, user=USER, password=PASSWORD, ipv6=False
    )
    with instance:
        assert instance.startup_seconds is not None
        assert instance.startup_seconds < 10
        master = instance.process
        assert master is not None
        port = instance.ports["plain"]
        marker = str(instance.config_directory)
    assert master.poll() is not None
    assert not instance.directory.exists()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=T).close()
    leftovers = [
        entry.name
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and _cmdline_mentions(entry, marker)
    ]
    assert leftovers == []


def _cmdline_mentions(entry: Path, marker: str) -> bool:
    try:
        return marker.encode() in (entry / "cmdline").read_bytes()
    except OSError:
        return False
