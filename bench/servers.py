"""What several benchmarks share: an SMTP server in a process of its own (so its CPU is not
counted as ours), and the config the consumer benchmarks feed."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from smtp_checks.shared.config import Config, load_config

# With "tls" set, the child makes a throw-away CA and serves its trusted certificate.
_SERVE = """
import json, sys, signal
from tests.smtp_servers import Pki, SmtpServer
options = json.loads(sys.argv[1])
pki = Pki()
if options.get("tls", "none") != "none":
    options["tls_context"] = pki.server_context("trusted")
server = SmtpServer(**options).start()
print(server.port, pki.ca_pem_path, flush=True)
signal.sigwait({signal.SIGTERM, signal.SIGINT})
server.stop()
pki.cleanup()
"""


@dataclass(frozen=True)
class ServerProcess:
    port: int
    ca_file: str  # the CA that signed the server's certificate, when it has TLS


@contextmanager
def server_process(**options: object) -> Iterator[ServerProcess]:
    """Start `tests.smtp_servers.SmtpServer(**options)` in a child process."""
    child = subprocess.Popen(
        [sys.executable, "-c", _SERVE, json.dumps(options)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        port, ca_file = child.stdout.readline().split()
        yield ServerProcess(int(port), ca_file)
    finally:
        child.terminate()
        child.wait(timeout=10)


def consumer_config(directory: Path, redis_url: str, checks: int, command_file: Path) -> Config:
    """A config of `checks` login checks (warning at 1 s) on one site, forwarded to a
    command file: what the consumer benchmarks feed results for."""
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump({
        "broker_url": redis_url,
        "sites": {"paris": {}},
        "hosts": [
            {"name": f"mx{i}", "address": "192.0.2.1", "site": "paris",
             "checks": {"login": {"warning": "1"}}}
            for i in range(checks)
        ],
        "centreon": {"forwarders": [{"type": "command_file", "path": str(command_file)}]},
    }))  # fmt: skip
    return load_config(path)
