"""`smtp-checks check --mode=roundtrip` does both sides in one process: it sends through a
real SMTP server that delivers into a real Dovecot, then finds the message over IMAP or POP3,
and prints the plugin line with the delivery time (or why there is none)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dovecot import DovecotInstance, dovecot_fixture, free_port
from tests.mail_path import MailPath
from tests.smtp_servers import Pki

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

USERS = {"alice": "alice-secret"}


@pytest.fixture(scope="module")
def mail_tls(pki: Pki) -> tuple[Path, Path]:
    return pki.cert_paths["trusted"], pki.key_paths["trusted"]


dovecot = dovecot_fixture(USERS, certificates="mail_tls", scope="module")


@pytest.fixture(scope="module")
def mail_path(dovecot: DovecotInstance) -> Iterator[MailPath]:
    with MailPath(dovecot, late_seconds=2.5) as path:
        yield path


def roundtrip(
    path: MailPath,
    pki: Pki,
    to: str,
    *extra: str,
    protocol: str = "imap",
    port: int = 0,
    smtp_port: int = 0,
) -> tuple[int, str]:
    listener = {"imap": "imaps", "pop3": "pop3s"}[protocol]
    run = subprocess.run(
        [
            sys.executable, "-m", "smtp_checks.cli.main", "check",
            "--plugin=apps::protocols::smtp::plugin", "--mode=roundtrip",
            "--hostname=127.0.0.1", f"--port={smtp_port or path.port}", "--smtp-options=layer=none",
            "--smtp-from=monitor@example.test", f"--smtp-to={to}",
            f"--receive-protocol={protocol}", "--receive-hostname=127.0.0.1",
            f"--receive-port={port or path.dovecot.ports[listener]}",
            "--receive-username=alice", "--receive-password=alice-secret",
            # the DESIGN form: several keys in one option
            f"--receive-options=layer=ssl,ssl_verify_mode=1,ssl_verify_ca={pki.ca_pem_path}",
            *extra,
        ],
        check=False, capture_output=True, text=True, timeout=50,
    )  # fmt: skip
    return run.returncode, run.stdout


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_a_delivered_message_is_ok_with_its_delivery_time(
    mail_path: MailPath, pki: Pki, protocol: str
) -> None:
    code, out = roundtrip(mail_path, pki, "alice@example.test", protocol=protocol)
    assert code == 0, out
    assert re.fullmatch(
        r"OK: Message delivered in \d+\.\d{3} s - Response time \d\.\d{3} second\(s\) \| "
        r"'time'=\d\.\d{3}s;;;; 'delivery'=\d+\.\d{3}s;;;;\n",
        out,
    ), out
    assert mail_path.dovecot.messages("alice") == []  # found, then deleted


def test_a_late_message_over_the_threshold_is_a_warning_measured_to_within_the_looks(
    mail_path: MailPath, pki: Pki
) -> None:
    code, out = roundtrip(
        mail_path, pki, "alice+late@example.test", "--warning-delivery=2", "--verbose",
        "--extra-perfdata",
    )  # fmt: skip
    assert code == 1, out
    first, long = out.splitlines()[0], out.splitlines()[1:]
    delivery = float(re.search(r"'delivery'=([\d.]+)s;0:2;", first).group(1))  # type: ignore[union-attr]
    assert first.startswith("WARNING: Message delivered in") and 2.5 <= delivery < 10, out
    assert any(re.match(r"Delivery time measured to within \d+\.\d s", line) for line in long)
    assert "'hop" not in first  # one Received: header: no hop between two


def test_a_message_in_junk_is_a_warning(mail_path: MailPath, pki: Pki) -> None:
    code, out = roundtrip(mail_path, pki, "alice+junk@example.test", "--receive-options=junk=Junk")
    assert (code, out.split(" |")[0]) == (1, "WARNING: Delivered to Junk"), out


def test_a_lost_message_is_critical_after_the_receive_timeout(
    mail_path: MailPath, pki: Pki
) -> None:
    code, out = roundtrip(mail_path, pki, "alice+lost@example.test", "--receive-timeout=3")
    assert code == 2, out
    assert re.match(
        r"CRITICAL: Message not delivered within 3 s \(sent \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, "
        r"token [0-9a-f]{32}\)",
        out,
    ), out


def test_a_mailbox_that_cannot_be_read_is_unknown(mail_path: MailPath, pki: Pki) -> None:
    code, out = roundtrip(mail_path, pki, "alice@example.test", port=free_port())
    assert (code, out.split(" |")[0]) == (
        3,
        "UNKNOWN: Cannot check the mailbox: Connection refused",
    )


def test_a_refused_send_is_worded_as_message_mode_words_it(pki: Pki, mail_path: MailPath) -> None:
    code, out = roundtrip(mail_path, pki, "alice@example.test", smtp_port=free_port())
    assert (code, out) == (3, "UNKNOWN: Unable to connect to SMTP: Connection refused \n")


def test_help_of_the_mode_lists_its_receive_options() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "smtp_checks.cli.main", "check", "--mode=roundtrip", "--help"],
        check=False, capture_output=True, text=True,
    ).stdout  # fmt: skip
    for option in ("--receive-protocol", "--receive-hostname", "--receive-port",
                   "--receive-username", "--receive-password", "--receive-options",
                   "--receive-timeout", "--warning-delivery", "--critical-delivery",
                   "--smtp-from"):  # fmt: skip
        assert option in out, option
