"""Start a few local SMTP servers (healthy, TLS with AUTH, slow, refusing, silent) and run
`smtp-checks check` against each as Centreon would: a real process per check, printing the
command line, the plugin output and the exit code.

Run it with `make demo` (or `.venv/bin/python -m demo`).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass

from tests.smtp_servers import TEST_PASSWORD, TEST_USER, Pki, RawServer, SmtpServer

PLUGIN = "--plugin=apps::protocols::smtp::plugin"
STATUS = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}
COLOUR = {0: "32", 1: "33", 2: "31", 3: "35"}


@dataclass(frozen=True)
class Case:
    title: str
    args: list[str]


def _cases(stack: ExitStack, pki: Pki) -> list[Case]:
    healthy = stack.enter_context(SmtpServer())
    secure = stack.enter_context(
        SmtpServer(
            tls="starttls",
            tls_context=pki.server_context("trusted"),
            username=TEST_USER,
            password=TEST_PASSWORD,
        )
    )
    self_signed = stack.enter_context(
        SmtpServer(tls="starttls", tls_context=pki.server_context("self_signed"))
    )
    slow = stack.enter_context(SmtpServer(command_delay=0.3))
    refusing = stack.enter_context(
        SmtpServer(rcpt_reply="550 5.1.1 <probe@example.net>: Recipient address rejected")
    )
    silent = stack.enter_context(RawServer("silent"))

    def at(server: SmtpServer | RawServer, *extra: str) -> list[str]:
        return [f"--hostname={server.host}", f"--port={server.port}", *extra]

    plain = "--smtp-options=layer=none"
    trust = f"--smtp-options=ssl_verify_ca={pki.ca_pem_path}"
    send = ["--smtp-from=monitor@example.com", "--smtp-to=probe@example.net"]
    return [
        Case("healthy server, login", ["--mode=login", *at(healthy, plain)]),
        Case(
            "STARTTLS + AUTH, certificate verified, password from the environment",
            [
                "--mode=login",
                *at(secure, trust),
                f"--username={TEST_USER}",
                "--pass-manager=environment",
                "--environment-map-option=password=SMTP_PASSWORD",
            ],
        ),
        Case("self-signed certificate (verified by default)", ["--mode=login", *at(self_signed)]),
        Case(
            "the same, verification turned off explicitly",
            ["--mode=login", *at(self_signed, "--smtp-options=ssl_verify_mode=SSL_VERIFY_NONE")],
        ),
        Case("message sent", ["--mode=message", *at(healthy, plain), *send]),
        Case(
            "slow server against thresholds",
            ["--mode=login", *at(slow, plain), "--warning=0.5", "--critical=2"],
        ),
        Case(
            "recipient refused (the Perl plugin says OK)",
            ["--mode=message", *at(refusing, plain), *send],
        ),
        Case(
            "server that never answers, 2 s deadline",
            ["--mode=login", *at(silent, plain), "--timeout=2"],
        ),
    ]


def _command() -> list[str]:
    installed = shutil.which("smtp-checks", path=os.path.dirname(sys.executable))
    return [installed] if installed else [sys.executable, "-m", "shared.cli.main"]


def main() -> int:
    colour = sys.stdout.isatty()
    environment = {**os.environ, "SMTP_PASSWORD": TEST_PASSWORD}
    pki = Pki()
    try:
        with ExitStack() as stack:
            for case in _cases(stack, pki):
                argv = [*_command(), "check", PLUGIN, *case.args]
                done = subprocess.run(
                    argv, capture_output=True, text=True, env=environment, check=False
                )
                label = STATUS.get(done.returncode, str(done.returncode))
                if colour:
                    label = f"\033[{COLOUR.get(done.returncode, '0')}m{label}\033[0m"
                print(f"== {case.title}")
                print(f"$ smtp-checks check {shlex.join(argv[len(_command()) + 1 :])}")
                print(done.stdout.rstrip("\n"))
                print(f"(exit {done.returncode}: {label})\n")
    finally:
        pki.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
