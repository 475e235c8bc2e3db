"""The test SMTP servers behave as documented (proved with the stdlib smtplib client)."""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable

import pytest

from tests.smtp_servers import (
    INJECTION_PAYLOAD,
    INVALID_UTF8_BANNER,
    LOOPBACK,
    TEST_PASSWORD,
    TEST_USER,
    Pki,
    RawServer,
    SmtpServer,
    refused_port,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(20)]

T = 3.0  # client socket timeout for well-behaved servers

SmtpFactory = Callable[..., SmtpServer]
RawFactory = Callable[..., RawServer]


def connect(srv: SmtpServer, host: str = LOOPBACK) -> smtplib.SMTP:
    return smtplib.SMTP(host, srv.port, local_hostname="probe.test", timeout=T)


def auth(client: smtplib.SMTP, mechanism: str, password: str = TEST_PASSWORD) -> tuple[int, bytes]:
    client.user, client.password = TEST_USER, password
    method = {
        "PLAIN": client.auth_plain,
        "LOGIN": client.auth_login,
        "CRAM-MD5": client.auth_cram_md5,
    }[mechanism]
    return client.auth(mechanism, method)


def raw_socket(srv: RawServer, timeout: float = T) -> socket.socket:
    return socket.create_connection((srv.host, srv.port), timeout=timeout)


# --------------------------------------------------------------------------- PKI


def test_pki_files(pki: Pki) -> None:
    assert pki.ca_pem_path.is_file()
    assert pki.ca_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    for variant, path in pki.cert_paths.items():
        assert path.is_file(), variant
        assert pki.key_paths[variant].is_file(), variant


# --------------------------------------------------------------------------- SmtpServer


def test_plain_server_records_message(plain_server: SmtpServer) -> None:
    assert plain_server.host == LOOPBACK
    assert plain_server.port > 0
    with connect(plain_server) as client:
        code, _ = client.ehlo()
        assert code == 250
        assert client.has_extn("auth")
        assert not client.has_extn("starttls")
        refused = client.sendmail(
            "monitor@example.com",
            ["probe@example.com", "b@example.com"],
            b"Subject: t\r\n\r\nhi\r\n",
        )
        assert refused == {}
    assert plain_server.wait_idle()
    [msg] = plain_server.messages
    assert msg.mail_from == "monitor@example.com"
    assert msg.rcpt_tos == ("probe@example.com", "b@example.com")
    assert msg.content == b"Subject: t\r\n\r\nhi\r\n"
    assert msg.accepted
    assert not msg.tls
    # The controller's readiness check left no trace.
    assert plain_server.session_count == 1
    assert plain_server.connections == 1
    [session] = plain_server.sessions
    assert session.commands == ["EHLO", "MAIL", "RCPT", "RCPT", "DATA", "QUIT"]
    assert session.ended is not None


@pytest.mark.parametrize("host", [LOOPBACK, "localhost"])
def test_starttls_verifies_with_test_ca(starttls_server: SmtpServer, pki: Pki, host: str) -> None:
    with connect(starttls_server, host) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        assert not client.has_extn("auth")  # auth_require_tls: not before TLS
        code, _ = client.starttls(context=pki.client_context())
        assert code == 220
        client.ehlo()
        assert client.has_extn("auth")
        assert client.esmtp_features["auth"].split() == ["CRAM-MD5", "LOGIN", "PLAIN"]
        assert auth(client, "PLAIN")[0] == 235
        client.sendmail(TEST_USER, ["probe@example.com"], b"Subject: x\r\n\r\nbody\r\n")
    [msg] = starttls_server.messages
    assert msg.tls
    assert msg.authenticated_as == TEST_USER
    assert starttls_server.sessions[0].tls


@pytest.mark.parametrize(
    ("variant", "reason"),
    [
        ("wrong_host", "Hostname mismatch"),
        ("expired", "expired"),
        ("self_signed", "self-signed"),
    ],
)
@pytest.mark.parametrize("tls", ["starttls", "ssl"])
def test_bad_certificates_fail_verification(
    smtp_server_factory: SmtpFactory, pki: Pki, variant: str, reason: str, tls: str
) -> None:
    srv = smtp_server_factory(tls=tls, tls_context=pki.server_context(variant))  # type: ignore[arg-type]
    with pytest.raises(ssl.SSLCertVerificationError) as err:
        if tls == "ssl":
            smtplib.SMTP_SSL("localhost", srv.port, timeout=T, context=pki.client_context()).close()
        else:
            with smtplib.SMTP("localhost", srv.port, timeout=T) as client:
                client.starttls(context=pki.client_context())
    assert reason in str(err.value)
    # And without verification the handshake itself is fine.
    insecure = ssl._create_unverified_context()
    if tls == "ssl":
        with smtplib.SMTP_SSL(LOOPBACK, srv.port, timeout=T, context=insecure) as client:
            assert client.noop()[0] == 250
    else:
        with smtplib.SMTP(LOOPBACK, srv.port, timeout=T) as client:
            assert client.starttls(context=insecure)[0] == 220


def test_implicit_tls(ssl_server: SmtpServer, pki: Pki) -> None:
    with smtplib.SMTP_SSL(LOOPBACK, ssl_server.port, timeout=T, context=pki.client_context()) as c:
        c.ehlo()
        assert not c.has_extn("starttls")
        assert c.has_extn("auth")  # implicit TLS satisfies auth_require_tls
        assert auth(c, "LOGIN")[0] == 235
    assert ssl_server.session_count == 1
    assert ssl_server.sessions[0].tls
    assert ssl_server.auth_attempts[0].success


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_auth_mechanisms(plain_server: SmtpServer, mechanism: str) -> None:
    with connect(plain_server) as client:
        client.ehlo()
        assert auth(client, mechanism)[0] == 235
    with connect(plain_server) as client:
        client.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            auth(client, mechanism, password="wrong-pw")
        assert err.value.smtp_code == 535
    attempts = plain_server.auth_attempts
    assert [(a.mechanism, a.success, a.username) for a in attempts] == [
        (mechanism, True, TEST_USER),
        (mechanism, False, TEST_USER),
    ]
    assert TEST_PASSWORD not in repr(attempts)
    assert TEST_PASSWORD not in repr(plain_server.sessions)


def test_smtplib_login_picks_cram_md5(plain_server: SmtpServer) -> None:
    with connect(plain_server) as client:
        assert client.login(TEST_USER, TEST_PASSWORD)[0] == 235
    assert plain_server.auth_attempts[0].mechanism == "CRAM-MD5"


def test_auth_needs_tls_by_default(starttls_server: SmtpServer) -> None:
    with connect(starttls_server) as client:
        client.ehlo()
        code, _ = client.docmd("AUTH", "PLAIN")
        assert code == 538


def test_no_credentials_no_auth(smtp_server_factory: SmtpFactory) -> None:
    srv = smtp_server_factory(auth_require_tls=False)
    with connect(srv) as client:
        client.ehlo()
        assert not client.has_extn("auth")
        assert client.docmd("AUTH", "PLAIN")[0] == 504


def test_mechanism_subset(smtp_server_factory: SmtpFactory) -> None:
    srv = smtp_server_factory(
        username=TEST_USER,
        password=TEST_PASSWORD,
        auth_require_tls=False,
        auth_mechanisms=["LOGIN"],
    )
    with connect(srv) as client:
        client.ehlo()
        assert client.esmtp_features["auth"].strip() == "LOGIN"


def test_require_starttls(smtp_server_factory: SmtpFactory, pki: Pki) -> None:
    srv = smtp_server_factory(
        tls="starttls", tls_context=pki.server_context(), require_starttls=True
    )
    with connect(srv) as client:
        client.ehlo()
        assert client.docmd("MAIL", "FROM:<a@example.com>")[0] == 530


def test_banner_rejection(smtp_server_factory: SmtpFactory) -> None:
    srv = smtp_server_factory(banner_reply="554 5.3.2 Service unavailable")
    with pytest.raises(smtplib.SMTPConnectError) as err:
        connect(srv)
    assert err.value.smtp_code == 554
    assert b"Service unavailable" in err.value.smtp_error
    # RFC 5321: after a 554 greeting the server still answers QUIT.
    with socket.create_connection(srv.address, timeout=T) as sock, sock.makefile("rb") as f:
        assert f.readline().startswith(b"554 5.3.2")
        sock.sendall(b"EHLO x\r\n")
        assert f.readline().startswith(b"503")
        sock.sendall(b"QUIT\r\n")
        assert f.readline().startswith(b"221")


def test_ehlo_rejection(smtp_server_factory: SmtpFactory) -> None:
    srv = smtp_server_factory(ehlo_reply="550 5.7.1 HELO rejected")
    with connect(srv) as client:
        assert client.ehlo() == (550, b"5.7.1 HELO rejected")
        assert client.helo()[0] == 550


def test_starttls_refused_but_advertised(smtp_server_factory: SmtpFactory, pki: Pki) -> None:
    srv = smtp_server_factory(
        tls="starttls",
        tls_context=pki.server_context(),
        starttls_reply="454 4.7.0 TLS not available",
    )
    with connect(srv) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        with pytest.raises(smtplib.SMTPResponseException) as err:
            client.starttls(context=pki.client_context())
        assert err.value.smtp_code == 454


def test_mail_rcpt_data_rejections(smtp_server_factory: SmtpFactory) -> None:
    srv = smtp_server_factory(mail_reply="550 5.7.1 Sender rejected")
    with connect(srv) as client, pytest.raises(smtplib.SMTPSenderRefused) as s_err:
        client.sendmail("a@example.com", ["b@example.com"], b"x\r\n")
    assert s_err.value.smtp_code == 550

    srv = smtp_server_factory(rcpt_reply="550 5.1.1 No such user")
    with connect(srv) as client, pytest.raises(smtplib.SMTPRecipientsRefused) as r_err:
        client.sendmail("a@example.com", ["b@example.com"], b"x\r\n")
    assert r_err.value.recipients["b@example.com"][0] == 550

    srv = smtp_server_factory(data_reply="554 5.7.1 Message rejected as spam")
    with connect(srv) as client, pytest.raises(smtplib.SMTPDataError) as d_err:
        client.sendmail("a@example.com", ["b@example.com"], b"Subject: s\r\n\r\nspam\r\n")
    assert d_err.value.smtp_code == 554
    [msg] = srv.messages
    assert not msg.accepted
    assert msg.content == b"Subject: s\r\n\r\nspam\r\n"


def test_delays(smtp_server_factory: SmtpFactory) -> None:
    srv = smtp_server_factory(banner_delay=0.3, command_delay=0.1, hold_seconds=0.8)
    t0 = time.monotonic()
    client = connect(srv)
    t_banner = time.monotonic() - t0
    client.ehlo()
    t_ehlo = time.monotonic() - t0
    client.quit()
    t_quit = time.monotonic() - t0
    assert 0.3 <= t_banner < 0.6
    assert t_ehlo - t_banner >= 0.1
    assert 0.8 <= t_quit < 1.3


def test_max_concurrent_sessions(smtp_server_factory: SmtpFactory) -> None:
    srv = smtp_server_factory()
    n = 6
    barrier = threading.Barrier(n, timeout=T)
    errors: list[BaseException] = []

    def client() -> None:
        try:
            with connect(srv) as c:
                c.ehlo()
                barrier.wait()
                c.noop()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(T * 2)
    assert not errors
    assert srv.wait_idle()
    assert srv.session_count == n
    assert srv.max_concurrent_sessions == n
    assert srv.active_sessions == 0


def test_stop_frees_port_and_drops_sessions() -> None:
    srv = SmtpServer(banner_delay=5).start()
    sock = socket.create_connection(srv.address, timeout=T)
    assert srv.wait_for_sessions(1)
    t0 = time.monotonic()
    srv.stop()
    assert time.monotonic() - t0 < 2
    assert sock.recv(100) == b""  # dropped, no banner ever
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(srv.address, timeout=T).close()


def test_start_variants_quickly(pki: Pki) -> None:
    """Every variant starts fast, even those the stock readiness check would trip over."""
    t0 = time.monotonic()
    for kwargs in (
        {"banner_reply": "554 no"},
        {"banner_delay": 10.0},
        {"tls": "ssl", "tls_context": pki.server_context("expired")},
    ):
        with SmtpServer(**kwargs) as srv:  # type: ignore[arg-type]
            assert srv.port > 0
            assert srv.connections == 0
            assert srv.session_count == 0
    assert time.monotonic() - t0 < 2


# --------------------------------------------------------------------------- RawServer


def test_refused_port() -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((LOOPBACK, refused_port()), timeout=T).close()


def test_raw_silent(raw_server_factory: RawFactory) -> None:
    srv = raw_server_factory("silent")
    with raw_socket(srv, timeout=0.3) as sock, pytest.raises(TimeoutError):
        sock.recv(1)


def test_raw_drip(raw_server_factory: RawFactory) -> None:
    srv = raw_server_factory("drip", drip_interval=0.1)
    received = b""
    with raw_socket(srv) as sock:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.55:
            received += sock.recv(100)
    assert received.startswith(b"22")
    assert 3 <= len(received) <= 8
    # The writer notices the disconnect and stops.
    deadline = time.monotonic() + 2
    while srv.open_connections and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.open_connections == 0


def test_raw_endless_continuation(raw_server_factory: RawFactory) -> None:
    srv = raw_server_factory("endless_continuation")
    received = bytearray()
    with raw_socket(srv) as sock:
        while len(received) < 500_000:
            received += sock.recv(65536)
    lines = bytes(received).split(b"\r\n")[:-1]
    assert len(lines) > 5000
    assert all(line.startswith(b"220-") for line in lines)
    deadline = time.monotonic() + 2
    while srv.open_connections and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.open_connections == 0


def test_raw_close_after_banner(raw_server_factory: RawFactory) -> None:
    srv = raw_server_factory("close_after_banner")
    client = smtplib.SMTP(srv.host, srv.port, timeout=T)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.ehlo()


def test_raw_close_mid_session(raw_server_factory: RawFactory) -> None:
    srv = raw_server_factory("close_mid_session")
    client = smtplib.SMTP(srv.host, srv.port, timeout=T)
    assert client.ehlo()[0] == 250
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.mail("a@example.com")


def test_raw_huge_line(raw_server_factory: RawFactory) -> None:
    srv = raw_server_factory("huge_line")
    received = bytearray()
    with raw_socket(srv, timeout=0.5) as sock:
        while len(received) < 4 + 1024 * 1024:
            received += sock.recv(1 << 20)
        with pytest.raises(TimeoutError):  # still open, nothing more
            sock.recv(1)
    assert received.startswith(b"220 AAAA")
    assert b"\n" not in received


def test_raw_invalid_utf8_banner_then_normal_session(raw_server_factory: RawFactory) -> None:
    srv = raw_server_factory("invalid_utf8_banner")
    with smtplib.SMTP(timeout=T) as client:
        code, msg = client.connect(srv.host, srv.port)
        assert code == 220
        assert msg.startswith(b"\xff\xfe\xc3(")
        assert INVALID_UTF8_BANNER.startswith(b"220 " + msg[:4])
        client.ehlo()
        assert client.login(TEST_USER, TEST_PASSWORD)[0] == 235
        client.sendmail("a@example.com", ["b@example.com"], b"x\r\n.\r\n..y\r\n")


def test_raw_injection_banner(raw_server_factory: RawFactory) -> None:
    srv = raw_server_factory("injection_banner")
    with smtplib.SMTP(timeout=T) as client:
        code, msg = client.connect(srv.host, srv.port)
        assert code == 220
        lines = msg.decode().split("\n")
        assert INJECTION_PAYLOAD in lines
        assert "|" in msg.decode()
        client.ehlo()
        assert client.login(TEST_USER, TEST_PASSWORD)[0] == 235  # AUTH PLAIN
        assert client.noop()[0] == 250
    with smtplib.SMTP(srv.host, srv.port, timeout=T) as client:
        client.ehlo()
        client.user, client.password = TEST_USER, TEST_PASSWORD
        assert client.auth("LOGIN", client.auth_login, initial_response_ok=False)[0] == 235


def test_raw_garbage(raw_server_factory: RawFactory) -> None:
    srv = raw_server_factory("garbage")
    with raw_socket(srv) as sock, sock.makefile("rb") as f:
        assert f.readline() == b"HELLO WORLD\r\n"
        sock.sendall(b"EHLO probe.test\r\n")
        assert f.readline() == b"HELLO WORLD\r\n"
    with pytest.raises(smtplib.SMTPConnectError):
        smtplib.SMTP(srv.host, srv.port, timeout=T)


def test_raw_stop_with_clients_attached(raw_server_factory: RawFactory) -> None:
    srv = RawServer("drip", drip_interval=0.05).start()
    socks = [raw_socket(srv) for _ in range(3)]
    deadline = time.monotonic() + 2
    while srv.connections < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    t0 = time.monotonic()
    srv.stop()
    assert time.monotonic() - t0 < 2
    for sock in socks:
        with sock:
            sock.settimeout(T)
            with pytest.raises((ConnectionResetError, AssertionError)):
                while sock.recv(100):
                    pass
                raise AssertionError("EOF")  # clean close is fine too
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(srv.address, timeout=T).close()
