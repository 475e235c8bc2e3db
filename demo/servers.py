"""Local SMTP servers for the demo, each showing one thing the monitoring tells apart:
a healthy server, a slow one, one that refuses the recipient, one with STARTTLS and a
certificate from the demo's own CA, and a port where nothing listens.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

LOOPBACK = "127.0.0.1"


class DemoHandler:
    """Accepts everything, but for the delay and refusals it is told to show."""

    def __init__(self, *, delay: float = 0.0, rcpt_reply: str | None = None) -> None:
        self.delay = delay
        self.rcpt_reply = rcpt_reply

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        await asyncio.sleep(self.delay)
        session.host_name = hostname
        return responses

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "250 2.0.0 Accepted by the demo"


@dataclass(frozen=True)
class DemoServer:
    name: str  # the Centreon host name in the demo config
    port: int
    tls: str  # the config's tls: none or starttls
    expect: str  # the status the demo should show for its checks


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def _demo_ca(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A throw-away CA and a server certificate for 127.0.0.1, valid 30 days."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smtp-checks demo CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOOPBACK)]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    ca_path, cert_path, key_path = (
        directory / "demo-ca.pem",
        directory / "demo.crt",
        directory / "demo.key",
    )
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return ca_path, context


class DemoServers:
    """The demo's servers, running until closed. `ca_file` trusts the TLS one."""

    def __init__(self, directory: Path) -> None:
        self._stack = ExitStack()
        self.ca_file, tls_context = _demo_ca(directory)
        self.servers: list[DemoServer] = []
        self._start("mx-healthy", DemoHandler(), "none", "OK")
        self._start("mx-slow", DemoHandler(delay=1.2), "none", "WARNING")
        self._start(
            "mx-refusing",
            DemoHandler(rcpt_reply="550 5.1.1 <probe@example.net>: Recipient address rejected"),
            "none",
            "CRITICAL",
        )
        self._start("mx-tls", DemoHandler(), "starttls", "OK", tls_context=tls_context)
        self.servers.append(DemoServer("mx-down", free_port(), "none", "CRITICAL"))

    def _start(
        self, name: str, handler: DemoHandler, tls: str, expect: str, **options: Any
    ) -> None:
        port = free_port()
        controller = Controller(
            handler, hostname=LOOPBACK, port=port, server_hostname=f"{name}.demo", **options
        )
        controller.start()
        self._stack.callback(controller.stop)
        self.servers.append(DemoServer(name, port, tls, expect))

    def close(self) -> None:
        self._stack.close()

    def config(self, command_file: Path) -> dict[str, Any]:
        """A configuration checking every demo server, forwarding to `command_file`."""
        hosts = []
        for server in self.servers:
            checks: dict[str, Any] = {"login": {"warning": "1", "critical": "5"}}
            if server.name == "mx-refusing":
                checks = {"message": {"from": "monitor@example.com", "to": "probe@example.net"}}
            host: dict[str, Any] = {
                "name": server.name, "address": LOOPBACK, "port": server.port, "site": "demo",
                "tls": server.tls, "checks": checks,
            }  # fmt: skip
            if server.tls == "starttls":
                host["ca_file"] = str(self.ca_file)
            hosts.append(host)
        return {
            "defaults": {"interval": 10, "timeout": 5},
            "sites": {"demo": {}},
            "hosts": hosts,
            "centreon": {
                "forwarders": [{"type": "command_file", "path": str(command_file)}],
                "resend_interval": 30,
                "orphan_grace": 10,
            },
        }
