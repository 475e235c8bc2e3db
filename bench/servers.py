"""Run a benchmark's SMTP server in its own process, so its CPU is not counted as ours."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

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
