"""TLS details against aiosmtpd with certificates of the tests' own: the earliest expiry of the
chain the server sent (`chain_days_left`, `--warning-chain-days`/`--critical-chain-days`),
the TLS version and cipher in `--verbose` and in CheckResult, and `tls_min_version`
refusing a weaker session with a clear reason.

The chain is root -> intermediate (expiring in 20 days) -> leaf (in 300 days): only the chain
shows the intermediate's near expiry, which is what breaks clients when it passes.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import ipaddress
import re
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from smtp_checks.cli.main import main
from smtp_checks.shared.messages import Outcome
from tests.smtp_servers import SmtpServer
from tests.worker_harness import run_in_worker

pytestmark = [pytest.mark.integration]

_NOW = datetime.datetime.now(datetime.UTC)


def _certificate(
    name: str, days: int, key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None, *, ca: bool,
) -> x509.Certificate:  # fmt: skip
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOW - datetime.timedelta(days=1))
        .not_valid_after(_NOW + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                         x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )  # fmt: skip
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


class Chain:
    """root (10 years) -> intermediate (20 days) -> leaf for 127.0.0.1 (300 days), in files."""

    def __init__(self, directory: Path) -> None:
        root_key, middle_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in "abc")
        root = _certificate("Test Root", 3650, root_key, None, ca=True)
        middle = _certificate("Test Intermediate", 20, middle_key, (root, root_key), ca=True)
        leaf = _certificate("127.0.0.1", 300, leaf_key, (middle, middle_key), ca=False)
        pem = serialization.Encoding.PEM
        self.root = directory / "root.pem"
        self.root.write_bytes(root.public_bytes(pem))
        self.chain = directory / "chain.pem"  # what the server sends: leaf, then intermediate
        self.chain.write_bytes(leaf.public_bytes(pem) + middle.public_bytes(pem))
        self.key = directory / "key.pem"
        self.key.write_bytes(
            leaf_key.private_bytes(
                pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )

    def server_context(self, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.chain, self.key)
        if maximum is not None:
            context.maximum_version = maximum
        return context


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    return Chain(tmp_path_factory.mktemp("tls-chain"))


def check(server: SmtpServer, chain: Chain, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(
            ["check", "--plugin=apps::protocols::smtp::plugin", "--mode=login",
             "--hostname=127.0.0.1", f"--port={server.port}",
             f"--smtp-options=ssl_verify_ca={chain.root}", *args]
        )  # fmt: skip
    return code, out.getvalue()


def test_the_chains_earliest_expiry_is_measured_beside_the_leafs(
    smtp_server_factory: Callable[..., SmtpServer], chain: Chain
) -> None:
    server = smtp_server_factory(tls="starttls", tls_context=chain.server_context())
    code, out = check(server, chain, "--extra-perfdata")
    assert code == 0, out
    assert re.search(r"'cert_days_left'=(299|300)d;;;; 'chain_days_left'=(19|20)d;;;;", out), out


def test_chain_thresholds_warn_of_an_intermediate_about_to_expire(
    smtp_server_factory: Callable[..., SmtpServer], chain: Chain
) -> None:
    server = smtp_server_factory(tls="starttls", tls_context=chain.server_context())
    code, out = check(
        server, chain, "--warning-cert-days=30:", "--warning-chain-days=30:",
        "--critical-chain-days=7:",
    )  # fmt: skip
    assert code == 1, out
    assert re.match(r"WARNING: Certificate chain expires in (19|20) day\(s\) \| ", out), out
    assert "'chain_days_left'=" in out and ";30:;7:;;" in out, out


def tls_1_2_server(smtp_server_factory: Callable[..., SmtpServer], chain: Chain) -> SmtpServer:
    """A STARTTLS server that offers TLS 1.2 at most."""
    return smtp_server_factory(
        tls="starttls", tls_context=chain.server_context(ssl.TLSVersion.TLSv1_2)
    )


def test_verbose_shows_the_tls_version_and_cipher(
    smtp_server_factory: Callable[..., SmtpServer], chain: Chain
) -> None:
    server = tls_1_2_server(smtp_server_factory, chain)
    code, out = check(server, chain, "--verbose")
    assert code == 0, out
    assert re.fullmatch(r"TLS TLSv1\.2 \S+", out.splitlines()[1]), out


def test_tls_min_version_refuses_a_weaker_session_with_a_clear_reason(
    smtp_server_factory: Callable[..., SmtpServer], chain: Chain
) -> None:
    server = tls_1_2_server(smtp_server_factory, chain)
    code, out = check(server, chain, "--smtp-options=tls_min_version=1.3")
    assert code == 2, out
    assert out.startswith("CRITICAL: Unable to connect to SMTP: TLS handshake failed: "), out
    assert out.endswith(" (tls_min_version=1.3: the server may offer only older versions) \n"), out
    # The same server and client without the minimum agree on TLS 1.2.
    assert check(server, chain)[0] == 0


def test_a_worker_reports_version_cipher_and_chain_in_its_result(
    smtp_server_factory: Callable[..., SmtpServer], chain: Chain
) -> None:
    server = smtp_server_factory(tls="starttls", tls_context=chain.server_context())
    result = run_in_worker(
        {
            "sites": {"paris": {}},
            "defaults": {"tls_min_version": "1.3"},
            "hosts": [{"name": "mx", "address": "127.0.0.1", "port": server.port,
                       "site": "paris", "ca_file": str(chain.root), "checks": {"login": {}}}],
        }
    )  # fmt: skip
    assert result.outcome is Outcome.SUCCESS, result.detail
    assert result.tls_version == "TLSv1.3" and result.tls_cipher
    assert result.chain_days_left is not None and 19 < result.chain_days_left <= 20
    assert result.cert_days_left is not None and 299 < result.cert_days_left <= 300
