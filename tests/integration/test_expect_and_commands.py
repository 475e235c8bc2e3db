"""`expect=REGEX` on the banner and `command=CMD`/`response=REGEX` steps after EHLO (check_smtp's
-e, -C and -R), against a real Postfix and, for hostile replies, aiosmtpd and a raw server:
a mismatch is CRITICAL naming the step, the pattern and the reply (sanitised), in every mode;
a bad pattern or a command on two lines is refused before connecting. The same through the
config and a worker.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable

import pytest

from smtp_checks.cli.main import main
from smtp_checks.shared.config import ConfigError, parse_config
from smtp_checks.shared.result_output import render_result
from tests.postfix import (
    DEFAULT_HOSTNAME,
    PostfixInstance,
)
from tests.smtp_servers import INJECTION_PAYLOAD, RawServer, SmtpServer
from tests.worker_harness import run_in_worker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

PLUGIN = "--plugin=apps::protocols::smtp::plugin"


def check(capsys: pytest.CaptureFixture[str], port: int, *options: str) -> tuple[int, str]:
    code = main(
        ["check", PLUGIN, "--mode=login", "--hostname=127.0.0.1", f"--port={port}",
         "--smtp-options=layer=none", *(f"--smtp-options={option}" for option in options),
         "--extra-perfdata"]
    )  # fmt: skip
    return code, capsys.readouterr().out


def test_a_matching_banner_and_steps_are_ok_and_timed(
    mta: PostfixInstance, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = check(
        capsys, mta.ports["plain"], "expect=^220 .* ESMTP Postfix",
        "command=NOOP,response=^250 2\\.0\\.0", "command=VRFY postmaster", "response=^252",
    )  # fmt: skip
    assert code == 0, out
    assert out.startswith("OK: Response time "), out
    assert re.search(r"'time_banner'=\d+\.\d{3}s;;;; 'time_ehlo'=\S+ 'time_command'=\d", out), out
    mta.wait_for_log(r"disconnect from \S+ ehlo=1 noop=1 vrfy=1 quit=1")


def test_a_banner_that_does_not_match_is_critical_naming_pattern_and_banner(
    mta: PostfixInstance, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = check(capsys, mta.ports["plain"], "expect=^220 mail\\.elsewhere\\.example ")
    assert code == 2, out
    assert out == (
        "CRITICAL: Unexpected reply: banner: expected /^220 mail\\.elsewhere\\.example /, got: "
        f"220 {DEFAULT_HOSTNAME} ESMTP Postfix (test instance) \n"
    )


def test_a_step_whose_reply_does_not_match_is_critical_in_message_mode_too(
    mta: PostfixInstance, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["check", PLUGIN, "--mode=message", "--hostname=127.0.0.1", f"--port={mta.ports['plain']}",
         "--smtp-options=layer=none", "--smtp-options=command=VRFY postmaster,response=^250",
         "--smtp-from=m@test.example", f"--smtp-to=probe@{mta.domain}"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 2, out
    assert out.startswith(
        "CRITICAL: Unexpected reply: VRFY postmaster: expected /^250/, got: 252 2.0.0 postmaster"
    ), out
    # The check stopped at its step: no MAIL FROM, so nothing was sent.
    mta.wait_for_log(r"disconnect from \S+ ehlo=1 vrfy=1 commands=2")


def test_a_hostile_reply_to_a_step_reaches_the_output_sanitised(
    smtp_server_factory: Callable[..., SmtpServer], capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server_factory(mail_reply=f"550 5.7.1 no|{INJECTION_PAYLOAD}")
    code, out = check(capsys, server.port, "command=MAIL FROM:<m@test.example>,response=^250")
    assert code == 2, out
    # One line, its `|` made `/`: no perfdata forged, no second command for the Engine.
    assert out == (
        "CRITICAL: Unexpected reply: MAIL FROM:<m@test.example>: expected /^250/, got: "
        f"550 5.7.1 no/{INJECTION_PAYLOAD} \n"
    )


def test_a_hostile_banner_that_does_not_match_is_one_sanitised_line() -> None:
    with RawServer("injection_banner") as server:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(
                ["check", PLUGIN, "--mode=login", "--hostname=127.0.0.1", f"--port={server.port}",
                 "--smtp-options=layer=none", "--smtp-options=expect=^220 friendly"]
            )  # fmt: skip
    text = out.getvalue()
    assert code == 2, text
    assert text.count("\n") == 1 and "|" not in text, text
    assert text.startswith("CRITICAL: Unexpected reply: banner: expected /^220 friendly/, got: 220")


@pytest.mark.parametrize(
    ("option", "reason"),
    [
        ("expect=(", "Wrong smtp-options expect: '(' is not a regular expression: "),
        ("response=^250", "Wrong smtp-options response: it must follow a command="),
        ("command=NOOP\r\nRSET", "Wrong smtp-options command: must be one line"),
        ("command=", "Wrong smtp-options command: is empty"),
    ],
)
def test_bad_steps_are_refused_before_connecting(
    option: str, reason: str, plain_server: SmtpServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = check(capsys, plain_server.port, option)
    assert code == 3, out
    assert out.startswith(f"UNKNOWN: {reason}"), out
    assert plain_server.sessions == []


def _config(port: int, checks: dict[str, object]) -> dict[str, object]:
    return {
        "sites": {"paris": {}},
        "defaults": {"tls": "none"},
        "hosts": [{"name": "mx", "address": "127.0.0.1", "port": port, "site": "paris",
                   "checks": checks}],
    }  # fmt: skip


def test_the_config_takes_expect_and_commands_and_a_worker_gives_the_cli_output(
    mta: PostfixInstance, capsys: pytest.CaptureFixture[str]
) -> None:
    login = {
        "expect": "ESMTP Postfix",
        "commands": [{"command": "NOOP", "response": "^250"}, {"command": "VRFY postmaster",
                     "response": "^250"}],
    }  # fmt: skip
    text = render_result(run_in_worker(_config(mta.ports["plain"], {"login": login}))).text
    assert text.startswith(
        "CRITICAL: Unexpected reply: VRFY postmaster: expected /^250/, got: 252 2.0.0 postmaster"
    ), text
    _, out = check(capsys, mta.ports["plain"], "expect=ESMTP Postfix", "command=NOOP",
                   "response=^250", "command=VRFY postmaster", "response=^250")  # fmt: skip
    assert out.split(" | ")[0] == text.split(" | ")[0]


@pytest.mark.parametrize(
    ("login", "location", "reason"),
    [
        ({"expect": "("}, "hosts[0].checks.login.expect", "is not a regular expression"),
        ({"commands": [{"command": "NOOP\nRSET"}]}, "hosts[0].checks.login.commands[0].command",
         "must be one line"),
        ({"commands": [{"response": "^250"}]}, "hosts[0].checks.login.commands[0].command",
         "required"),
    ],
)  # fmt: skip
def test_the_config_refuses_bad_steps_with_the_same_rules(
    login: dict[str, object], location: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(_config(2525, {"login": login}))
    problems = {problem.location: problem.reason for problem in raised.value.problems}
    assert reason in problems[location], problems
