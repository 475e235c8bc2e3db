"""Round trips across sites, through the whole pipeline into a real Nagios 4 core: each
message is sent by a worker of `paris` (through an SMTP server that delivers into a real
Dovecot) and looked for by a worker of another site, over IMAPS or POP3S; the roundtrip
service gets one verdict with the delivery time, for every case the issue names."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

import pytest

from smtp_checks.shared.keys import KEYS
from tests.dovecot import DovecotInstance, dovecot_fixture, free_port
from tests.e2e.pipeline import Pipeline, host
from tests.mail_path import MailPath
from tests.smtp_servers import Pki

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

USERS = {"alice": "alice-secret", "bob": "bob-secret"}
SERVICE = "SMTP-Roundtrip"
LATE = 5.0  # seconds the delaying delivery path holds a message


@pytest.fixture(scope="module")
def mail_tls(pki: Pki) -> tuple[Path, Path]:
    return pki.cert_paths["trusted"], pki.key_paths["trusted"]


dovecot = dovecot_fixture(USERS, certificates="mail_tls", scope="module")


def roundtrip(
    dovecot: DovecotInstance,
    pki: Pki,
    to: str,
    *,
    site: str = "lyon",
    protocol: str = "imap",
    user: str = "alice",
    password: str = "env:RT_MAILBOX_PASSWORD",
    port: int | None = None,
    timeout: float = 10,
    **receive: Any,
) -> dict[str, Any]:
    return {
        "from": "monitor@example.test",
        "to": [to],
        "receive": {
            "protocol": protocol,
            "address": "127.0.0.1",
            "port": port or dovecot.ports[f"{protocol}s"],
            "ca_file": str(pki.ca_pem_path),
            "username": user,
            "password": password,
            "site": site,
            "timeout": timeout,
            **receive,
        },
    }


def test_every_round_trip_case_reaches_nagios_with_its_verdict(
    pipelines: Callable[..., Pipeline],
    dovecot: DovecotInstance,
    pki: Pki,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RT_MAILBOX_PASSWORD", "alice-secret")
    monkeypatch.setenv("RT_BOB_PASSWORD", "bob-secret")
    monkeypatch.setenv("RT_WRONG_PASSWORD", "not-alices-password")
    with MailPath(dovecot, late_seconds=LATE) as path:
        cases = {
            "delivered": roundtrip(dovecot, pki, "alice@example.test", warning=4),
            "pop3": roundtrip(
                dovecot, pki, "bob@example.test", protocol="pop3", user="bob",
                password="env:RT_BOB_PASSWORD",
            ),
            "late": roundtrip(dovecot, pki, "alice+late@example.test", warning=3, timeout=15),
            "lost": roundtrip(dovecot, pki, "alice+lost@example.test", timeout=4),
            "junk": roundtrip(dovecot, pki, "alice+junk@example.test", junk=["Junk", "Spam"]),
            "badpassword": roundtrip(
                dovecot, pki, "alice@example.test", password="env:RT_WRONG_PASSWORD"
            ),
            "mailboxdown": roundtrip(dovecot, pki, "alice@example.test", port=free_port()),
            "sitedown": roundtrip(dovecot, pki, "alice@example.test", site="marseille"),
        }  # fmt: skip
        hosts = [
            host(f"rt-{name}", "paris", path.port, {"roundtrip": check}, interval=30)
            for name, check in cases.items()
        ]
        pipeline = pipelines(
            hosts,
            timeout=2.0,
            workers={"paris": ["paris-1"], "lyon": ["lyon-1"], "marseille": ["marseille-1"]},
        )
        pipeline.start(roles=[name for name in pipeline.roles if name != "beat"])
        # The receiving site of `sitedown` goes down before any check is scheduled.
        assert pipeline.stop("marseille-1") == 0
        pipeline.start_role("beat")

        status = pipeline.wait_for_services(
            lambda block: block.get("has_been_checked") == "1" and block.get("plugin_output"),
            40,
            "every roundtrip service checked",
        )

        # Ad hoc, through the queue: `enqueue --wait` gets the verdict, not the send step's.
        enqueued = subprocess.run(
            [sys.executable, "-m", "smtp_checks.cli.main", "enqueue", "--config",
             str(pipeline.config_path), "--host", "rt-delivered", "--check", "roundtrip",
             "--wait", "30"],
            env=pipeline.env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert enqueued.returncode == 0, enqueued.stdout + enqueued.stderr
        assert enqueued.stdout.startswith("OK: Message delivered in "), enqueued.stdout

    def shown(name: str) -> tuple[str, str, str]:
        block = status[(f"rt-{name}", SERVICE)]
        return block["current_state"], block["plugin_output"], block["performance_data"]

    state, output, perfdata = shown("delivered")
    assert state == "0" and re.match(
        r"OK: Message delivered in \d\.\d{3} s - Response time", output
    )
    assert re.search(r"'delivery'=\d\.\d{3}s;0:4;;;", perfdata) and "'time'=" in perfdata

    state, output, _ = shown("pop3")
    assert state == "0" and output.startswith("OK: Message delivered in"), output

    # Held LATE seconds: found by a later look, over the warning threshold.
    state, output, perfdata = shown("late")
    delivery = float(re.search(r"'delivery'=([\d.]+)s", perfdata).group(1))  # type: ignore[union-attr]
    assert state == "1" and output.startswith("WARNING: Message delivered in"), output
    assert LATE <= delivery < 15

    state, output, _ = shown("lost")
    assert state == "2", output
    assert re.fullmatch(
        r"CRITICAL: Message not delivered within 4 s \(sent \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, "
        r"token [0-9a-f]{32}\)",
        output,
    ), output

    state, output, _ = shown("junk")
    assert (state, output) == ("1", "WARNING: Delivered to Junk"), output

    state, output, _ = shown("badpassword")
    assert state == "3" and output.startswith("UNKNOWN: Cannot check the mailbox: "), output
    assert "authentication failed" in output.lower() or "refused" in output, output
    assert "not-alices-password" not in output

    state, output, _ = shown("mailboxdown")
    assert (state, output) == ("3", "UNKNOWN: Cannot check the mailbox: Connection refused")

    # No worker of marseille took the look: UNKNOWN, never a false "not delivered".
    state, output, _ = shown("sitedown")
    assert state == "3", output
    assert "service check orphaned: no worker on checks.marseille" in output, output

    # Each found message was deleted; what was never found stays (the next run's look
    # deletes it). Once the beat stops and the last sends are in: only the messages of round
    # trips still in progress, and those of the cases that could not look, are left.
    pipeline.stop("beat")
    time.sleep(3)
    in_progress = {json.loads(trip)["token"] for trip in pipeline.client.hvals(KEYS.roundtrips)}
    left = {
        tag
        for user, folder in [("alice", "INBOX"), ("alice", "Junk"), ("bob", "INBOX")]
        for tag, token in map(tag_and_token, dovecot.messages(user, folder))
        if token not in in_progress
    }
    assert left == {"<rt-badpassword/roundtrip>", "<rt-mailboxdown/roundtrip>",
                    "<rt-sitedown/roundtrip>"}  # fmt: skip


def tag_and_token(message: bytes) -> tuple[str, str]:
    headers = BytesHeaderParser().parsebytes(message)
    return str(headers["X-Smtp-Checks-Check"]), str(headers["X-Smtp-Checks-Token"])
