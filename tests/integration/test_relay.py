"""Mode `relay` against a real Postfix (tests/postfix.py): its ports refuse unauthenticated
relaying as Postfix does by default ("554 5.7.1 ... Relay access denied"), and its
`open_relay` port accepts any recipient, the incident the check is for. The check never
sends DATA: nothing reaches the queue. Through the CLI and through the pipeline's worker
(the config's check kind `relay`), with the same output.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from smtp_checks.cli.main import main
from smtp_checks.shared.config import parse_config
from smtp_checks.shared.result_output import render_result
from tests.postfix import (
    PROBE_USER,
    PostfixInstance,
)
from tests.smtp_servers import SmtpServer
from tests.worker_harness import run_in_worker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

OUTSIDE = "x@outside.example"
SENDER = PROBE_USER


def relay_check(capsys: pytest.CaptureFixture[str], port: int, *extra: str) -> tuple[int, str]:
    code = main(
        ["check", "--plugin=apps::protocols::smtp::plugin", "--mode=relay",
         "--hostname=127.0.0.1", f"--port={port}", f"--smtp-from={SENDER}",
         f"--smtp-to={OUTSIDE}", *extra]
    )  # fmt: skip
    return code, capsys.readouterr().out


def test_a_closed_relay_is_ok_with_postfixs_refusal(
    mta: PostfixInstance, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = f"--smtp-options=ssl_verify_ca={mta.ca}"
    code, out = relay_check(capsys, mta.ports["plain"], ca)
    assert code == 0, out
    assert out.startswith(
        f"OK: Relay refused: 554 5.7.1 <{OUTSIDE}>: Relay access denied | 'time'="
    ), out
    # STARTTLS first (the default layer), then the test, RSET, QUIT: never DATA.
    log = mta.wait_for_log(r"disconnect from \S+ ehlo=2 starttls=1 mail=1 rcpt=0/1 rset=1 quit=1")
    assert "data=" not in log.group(0)


def test_an_open_relay_is_critical_and_nothing_is_sent(
    mta: PostfixInstance, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = relay_check(capsys, mta.ports["open_relay"], "--smtp-options=layer=none")
    assert code == 2, out
    assert out.startswith(f"CRITICAL: Open relay: RCPT TO <{OUTSIDE}> accepted: 250 2.1.5 Ok"), out
    mta.wait_for_log(r"postfix/open_relay/smtpd\[\d+\]: disconnect from \S+ .*rcpt=1 rset=1 quit=1")
    time.sleep(0.5)
    assert "postfix/cleanup" not in mta.log_text()  # no message was ever queued


def test_a_4xx_refusal_is_a_warning(
    smtp_server_factory: Callable[..., SmtpServer], capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server_factory(rcpt_reply="451 4.3.0 Try again later")
    code, out = relay_check(capsys, server.port, "--smtp-options=layer=none")
    assert code == 1, out
    assert out.startswith(
        f"WARNING: Relay refused for now only: RCPT TO <{OUTSIDE}>: 451 4.3.0 Try again later"
    ), out


def test_the_relay_mode_needs_one_outside_address(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["check", "--plugin=apps::protocols::smtp::plugin", "--mode=relay",
         "--hostname=127.0.0.1", f"--smtp-from={SENDER}", f"--smtp-to={OUTSIDE},y@outside.example"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert (code, out) == (3, "UNKNOWN: Wrong --smtp-to: a relay test tries one outside address \n")


def test_the_config_kind_relay_runs_on_a_worker_with_the_same_output(
    mta: PostfixInstance, capsys: pytest.CaptureFixture[str]
) -> None:
    for port_name, status, text in [
        ("plain", 0, f"OK: Relay refused: 554 5.7.1 <{OUTSIDE}>: Relay access denied"),
        ("open_relay", 2, f"CRITICAL: Open relay: RCPT TO <{OUTSIDE}> accepted: 250 2.1.5 Ok"),
    ]:
        settings = {
            "sites": {"paris": {}},
            "defaults": {"tls": "none"},
            "hosts": [{"name": "mx", "address": "127.0.0.1", "port": mta.ports[port_name],
                       "site": "paris", "username": "ignored",
                       "password": "env:NOT_SET_ANYWHERE",  # never resolved: no AUTH
                       "checks": {"relay": {"from": SENDER, "to": OUTSIDE}}}],
        }  # fmt: skip
        [check] = parse_config(settings).scheduled_checks()
        assert (check.service, check.password) == ("SMTP-Relay", None)
        result = run_in_worker(settings)
        rendered = render_result(result)
        assert (result.status, rendered.text.split(" | ")[0]) == (status, text), rendered.text
        # The CLI prints the same first words for the same server.
        code, out = relay_check(capsys, mta.ports[port_name], "--smtp-options=layer=none")
        assert (code, out.split(" | ")[0]) == (status, text)
