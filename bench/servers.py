"""Run a benchmark's SMTP server in its own process, so its CPU is not counted as ours."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_SERVE = """
import json, sys, signal
from tests.smtp_servers import SmtpServer
server = SmtpServer(**json.loads(sys.argv[1])).start()
print(server.port, flush=True)
signal.sigwait({signal.SIGTERM, signal.SIGINT})
server.stop()
"""


@contextmanager
def server_process(**options: object) -> Iterator[int]:
    """Start `tests.smtp_servers.SmtpServer(**options)` in a child process; yield its port."""
    child = subprocess.Popen(
        [sys.executable, "-c", _SERVE, json.dumps(options)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        yield int(child.stdout.readline())
    finally:
        child.terminate()
        child.wait(timeout=10)
