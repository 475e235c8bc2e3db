"""`smtp-checks check` against real SMTP servers: the plugin's output and exit codes.

Each test starts its own aiosmtpd (or hand-written hostile) server on a loopback port and
runs the check in-process, as Centreon would run the command. A few tests at the end run it
as a real process.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

import pytest

from smtp_checks.cli.main import main
from tests.smtp_servers import (
    TEST_PASSWORD,
    TEST_USER,
    UNRESOLVABLE_HOST,
    Pki,
    RawServer,
    SmtpServer,
    refused_port,
)

PLUGIN = "--plugin=apps::protocols::smtp::plugin"
OK_LOGIN = re.compile(r"OK: Response time \d+\.\d{3} second\(s\) \| 'time'=\d+\.\d{3}s;;;;\n")
OK_MESSAGE = re.compile(
    r"OK: Message sent - Response time \d+\.\d{3} second\(s\) \| 'time'=\d+\.\d{3}s;;;;\n"
)
FROM, TO = "monitor@example.com", "probe@example.net"


class Run:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def check(capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    def run(*args: str) -> Run:
        code = main(["check", PLUGIN, *args])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


def target(server: SmtpServer | RawServer) -> list[str]:
    return [f"--hostname={server.host}", f"--port={server.port}"]


def plain(server: SmtpServer | RawServer) -> list[str]:
    return [*target(server), "--smtp-options=layer=none"]


def trusting(pki: Pki) -> str:
    return f"--smtp-options=ssl_verify_ca={pki.ca_pem_path}"


def message_args(server: SmtpServer | RawServer) -> list[str]:
    return ["--mode=message", *plain(server), f"--smtp-from={FROM}", f"--smtp-to={TO}"]


# -- success ---------------------------------------------------------------------------


def test_login_plain_ok(check: Callable[..., Run], plain_server: SmtpServer) -> None:
    run = check("--mode=login", *plain(plain_server))
    assert OK_LOGIN.fullmatch(run.out), run.out
    assert run.code == 0
    assert plain_server.session_count == 1


def test_option_value_as_separate_argument(
    check: Callable[..., Run], plain_server: SmtpServer
) -> None:
    run = check(
        "--mode", "login", "--hostname", plain_server.host, "--port", str(plain_server.port),
        "--smtp-options", "layer=none",
    )  # fmt: skip
    assert OK_LOGIN.fullmatch(run.out), run.out


def test_starttls_verified_with_ca(
    check: Callable[..., Run], starttls_server: SmtpServer, pki: Pki
) -> None:
    run = check("--mode=login", *target(starttls_server), trusting(pki))
    assert OK_LOGIN.fullmatch(run.out), run.out
    assert starttls_server.sessions[0].tls


def test_implicit_tls_verified_with_ca(
    check: Callable[..., Run], ssl_server: SmtpServer, pki: Pki
) -> None:
    run = check("--mode=login", *target(ssl_server), "--smtp-options=layer=ssl", trusting(pki))
    assert OK_LOGIN.fullmatch(run.out), run.out


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_auth_mechanisms_over_starttls(
    check: Callable[..., Run], starttls_server: SmtpServer, pki: Pki, mechanism: str
) -> None:
    run = check(
        "--mode=login", *target(starttls_server), trusting(pki),
        f"--smtp-options=auth={mechanism}", f"--username={TEST_USER}",
        f"--password={TEST_PASSWORD}",
    )  # fmt: skip
    assert OK_LOGIN.fullmatch(run.out), run.out
    assert [(a.mechanism, a.success) for a in starttls_server.auth_attempts] == [(mechanism, True)]


def test_auth_auto_prefers_plain_over_tls_and_cram_in_clear(
    check: Callable[..., Run], starttls_server: SmtpServer, plain_server: SmtpServer, pki: Pki
) -> None:
    creds = (f"--username={TEST_USER}", f"--password={TEST_PASSWORD}")
    assert check("--mode=login", *target(starttls_server), trusting(pki), *creds).code == 0
    assert check("--mode=login", *plain(plain_server), *creds).code == 0
    assert starttls_server.auth_attempts[0].mechanism == "PLAIN"
    assert plain_server.auth_attempts[0].mechanism == "CRAM-MD5"


def test_message_sent_is_a_proper_mail(check: Callable[..., Run], plain_server: SmtpServer) -> None:
    run = check(
        *message_args(plain_server),
        "--smtp-send-options=subject=Probe 42", "--smtp-send-options=cc=cc@example.net",
        "--smtp-send-options=bcc=hidden@example.net",
        "--smtp-send-options=replyto=ops@example.com",
    )  # fmt: skip
    assert OK_MESSAGE.fullmatch(run.out), run.out
    (received,) = plain_server.messages
    assert received.mail_from == FROM
    assert received.rcpt_tos == (TO, "cc@example.net", "hidden@example.net")
    mail = message_from_bytes(received.content, policy=default_policy)
    assert mail["Subject"] == "Probe 42"
    assert mail["From"] == FROM and mail["To"] == TO and mail["Cc"] == "cc@example.net"
    assert mail["Reply-To"] == "ops@example.com"
    assert mail["Date"] and mail["Message-ID"]
    assert "Bcc" not in mail and "hidden@" not in received.content.decode()


def test_message_body_with_leading_dots_arrives_intact(
    check: Callable[..., Run], plain_server: SmtpServer
) -> None:
    run = check(*message_args(plain_server), "--smtp-send-options=body=.hidden\n.\nend")
    assert run.code == 0, run.out
    mail = message_from_bytes(plain_server.messages[0].content, policy=default_policy)
    assert mail.get_content().replace("\r\n", "\n") == ".hidden\n.\nend\n"


# -- thresholds --------------------------------------------------------------------------


def test_warning_threshold_breached(check: Callable[..., Run], plain_server: SmtpServer) -> None:
    run = check("--mode=login", *plain(plain_server), "--warning=0")
    assert re.fullmatch(
        r"WARNING: Response time \d\.\d{3} second\(s\) \| 'time'=\d\.\d{3}s;0:0;;;\n", run.out
    ), run.out
    assert run.code == 1


def test_critical_wins_over_warning(check: Callable[..., Run], plain_server: SmtpServer) -> None:
    run = check("--mode=login", *plain(plain_server), "--warning=0", "--critical=0")
    assert re.fullmatch(r"CRITICAL: Response time .* 'time'=\d\.\d{3}s;0:0;0:0;;\n", run.out)
    assert run.code == 2


def test_thresholds_not_breached_are_printed(
    check: Callable[..., Run], plain_server: SmtpServer
) -> None:
    run = check("--mode=login", *plain(plain_server), "--warning=0", "--critical=5")
    assert run.code == 1
    assert run.out.endswith(";0:0;0:5;;\n")
    run = check("--mode=login", *plain(plain_server), "--warning=2", "--critical=5")
    assert run.code == 0 and run.out.endswith(";0:2;0:5;;\n"), run.out


def test_message_mode_breach_hides_message_sent(
    check: Callable[..., Run], plain_server: SmtpServer
) -> None:
    run = check(*message_args(plain_server), "--warning=0:0.000001")
    assert re.fullmatch(r"WARNING: Response time \d\.\d{3} second\(s\) \| .*\n", run.out), run.out


@pytest.mark.parametrize("option", ["warning", "critical"])
def test_invalid_threshold(check: Callable[..., Run], option: str) -> None:
    run = check("--mode=login", "--hostname=127.0.0.1", f"--{option}=abc")
    assert run.out == f"UNKNOWN: Wrong {option} threshold 'abc'. \n"
    assert run.code == 3


# -- option errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--mode=login"], "UNKNOWN: Please set the hostname option \n"),
        (["--mode=message", "--hostname=h", "--smtp-to=a@b"], "UNKNOWN: Please set smtp-from option \n"),
        (["--mode=message", "--hostname=h", "--smtp-from=a@b"], "UNKNOWN: Please set smtp-to option \n"),
        (["--mode=login", "--hostname=h", "--username=u"], "UNKNOWN: Please set --password option. \n"),
    ],
)  # fmt: skip
def test_missing_options(check: Callable[..., Run], args: list[str], expected: str) -> None:
    run = check(*args)
    assert (run.out, run.code) == (expected, 3)


def test_unknown_option_is_unknown(check: Callable[..., Run]) -> None:
    run = check("--mode=login", "--hostname=h", "--no-such-option=1")
    assert run.out.startswith("UNKNOWN: Unknown option: --no-such-option")
    assert run.code == 3


def test_opt_exit_changes_option_error_code(check: Callable[..., Run]) -> None:
    run = check("--mode=login", "--opt-exit=critical")
    assert run.code == 2 and run.out.startswith("CRITICAL: Please set the hostname option")


def test_list_mode_and_version(check: Callable[..., Run]) -> None:
    run = check("--list-mode")
    assert "login" in run.out and "message" in run.out and run.code == 3
    run = check("--version")
    assert run.out.startswith("Plugin Version: ") and run.code == 3


def test_mode_help_lists_the_mode_options(check: Callable[..., Run]) -> None:
    assert "--smtp-from" in check("--mode=message", "--help").out
    assert "--smtp-from" not in check("--mode=login", "--help").out


# -- TLS and certificates -------------------------------------------------------------------


def test_layer_tls_refuses_a_server_without_starttls(
    check: Callable[..., Run], plain_server: SmtpServer
) -> None:
    run = check("--mode=login", *target(plain_server))
    assert run.out == "CRITICAL: Unable to connect to SMTP: server does not offer STARTTLS \n"
    assert run.code == 2


def test_refused_starttls_never_sends_auth_in_clear(
    check: Callable[..., Run], smtp_server_factory: Callable[..., SmtpServer], pki: Pki
) -> None:
    server = smtp_server_factory(
        tls="starttls", tls_context=pki.server_context("trusted"),
        starttls_reply="454 4.7.0 TLS not available", username=TEST_USER,
        password=TEST_PASSWORD, auth_require_tls=False,
    )  # fmt: skip
    run = check(
        "--mode=login", *target(server), trusting(pki),
        f"--username={TEST_USER}", f"--password={TEST_PASSWORD}",
    )  # fmt: skip
    assert run.out == (
        "CRITICAL: Unable to connect to SMTP: STARTTLS refused: 454 4.7.0 TLS not available \n"
    )
    assert server.auth_attempts == []


@pytest.mark.parametrize(
    ("variant", "reason"),
    [
        ("trusted", "unable to get local issuer certificate"),  # test CA not trusted
        ("wrong_host", "mismatch, certificate is not valid for '127.0.0.1'"),
        ("expired", "certificate has expired"),
        ("self_signed", "self-signed certificate"),
    ],
)
@pytest.mark.parametrize("layer", ["tls", "ssl"])
def test_certificate_problems_are_critical(
    check: Callable[..., Run],
    smtp_server_factory: Callable[..., SmtpServer],
    pki: Pki,
    variant: str,
    reason: str,
    layer: str,
) -> None:
    server = smtp_server_factory(
        tls="starttls" if layer == "tls" else "ssl", tls_context=pki.server_context(variant)
    )
    ca = [] if variant == "trusted" else [trusting(pki)]
    run = check("--mode=login", *target(server), f"--smtp-options=layer={layer}", *ca)
    assert run.out.startswith("CRITICAL: Unable to connect to SMTP: certificate verify failed: "), (
        run.out
    )
    assert reason in run.out
    assert run.code == 2


@pytest.mark.parametrize("value", ["SSL_VERIFY_NONE", "0"])
def test_verification_can_be_turned_off(
    check: Callable[..., Run],
    smtp_server_factory: Callable[..., SmtpServer],
    pki: Pki,
    value: str,
) -> None:
    server = smtp_server_factory(tls="starttls", tls_context=pki.server_context("self_signed"))
    run = check("--mode=login", *target(server), f"--smtp-options=ssl_verify_mode={value}")
    assert OK_LOGIN.fullmatch(run.out), run.out


def test_certificate_days_thresholds(
    check: Callable[..., Run], starttls_server: SmtpServer, pki: Pki
) -> None:
    run = check(
        "--mode=login", *target(starttls_server), trusting(pki), "--critical-cert-days=1000000:"
    )
    assert re.fullmatch(
        r"CRITICAL: Certificate expires in \d+ day\(s\) \| 'time'=\S+;;;; "
        r"'cert_days_left'=\d+d;;1000000:;;\n",
        run.out,
    ), run.out
    assert run.code == 2
    run = check("--mode=login", *target(starttls_server), trusting(pki), "--warning-cert-days=7:")
    assert run.code == 0
    assert re.match(r"OK: Response time \S+ second\(s\) - Certificate expires in \d+ day", run.out)


def test_extra_perfdata_has_phase_times_and_tls_details(
    check: Callable[..., Run], starttls_server: SmtpServer, pki: Pki
) -> None:
    run = check(
        "--mode=login", *target(starttls_server), trusting(pki), "--extra-perfdata", "--verbose"
    )
    first, *long_lines = run.out.splitlines()
    for phase in ("connect", "banner", "ehlo", "tls", "quit"):
        assert f"'time_{phase}'=" in first
    assert "'cert_days_left'=" in first
    assert any(re.match(r"TLS TLSv1\.[23] \S+", line) for line in long_lines), run.out
    assert run.code == 0


# -- AUTH ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_wrong_password_is_critical_and_never_shown(
    check: Callable[..., Run], starttls_server: SmtpServer, pki: Pki, mechanism: str
) -> None:
    run = check(
        "--mode=login", *target(starttls_server), trusting(pki), "--debug",
        f"--smtp-options=auth={mechanism}", f"--username={TEST_USER}", "--password=wrong-pw-123",
    )  # fmt: skip
    assert run.out.startswith("CRITICAL: Unable to connect to SMTP: authentication failed: 535")
    assert run.code == 2
    assert "wrong-pw-123" not in run.out + run.err
    assert f"C: AUTH {mechanism}" in run.err


def test_debug_transcript_redacts_auth(
    check: Callable[..., Run], starttls_server: SmtpServer, pki: Pki
) -> None:
    run = check(
        "--mode=login", *target(starttls_server), trusting(pki), "--debug",
        f"--username={TEST_USER}", f"--password={TEST_PASSWORD}",
    )  # fmt: skip
    assert run.code == 0
    assert "C: AUTH PLAIN <redacted>" in run.err
    assert TEST_PASSWORD not in run.err and "czNjcmV0" not in run.err  # nor its base64
    first, tls = run.out.splitlines()  # --debug forces the long output, as in the plugin
    assert OK_LOGIN.fullmatch(first + "\n") and tls.startswith("TLS TLSv1."), run.out


def test_server_without_auth(
    check: Callable[..., Run], smtp_server_factory: Callable[..., SmtpServer]
) -> None:
    server = smtp_server_factory()
    run = check("--mode=login", *plain(server), "--username=u", "--password=p")
    assert run.out == "CRITICAL: Unable to connect to SMTP: server offers no AUTH \n"


def test_password_from_environment(
    check: Callable[..., Run], plain_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_TEST_PW", TEST_PASSWORD)
    run = check(
        "--mode=login", *plain(plain_server), f"--username={TEST_USER}",
        "--pass-manager=environment", "--environment-map-option=password=SMTP_TEST_PW",
    )  # fmt: skip
    assert OK_LOGIN.fullmatch(run.out), run.out
    assert plain_server.auth_attempts[0].success


def test_password_from_secret_file(
    check: Callable[..., Run], plain_server: SmtpServer, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"smtp": {"mx1": {"password": TEST_PASSWORD}}}))
    run = check(
        "--mode=login", *plain(plain_server), f"--username={TEST_USER}",
        "--pass-manager=file", f"--secret-file={secrets}",
        "--secret-search-value=pw=$.smtp.mx1.password", "--secret-map-option=password=%{pw}",
    )  # fmt: skip
    assert OK_LOGIN.fullmatch(run.out), run.out


# -- servers that refuse -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "code", "label"), [("login", 2, "CRITICAL"), ("message", 3, "UNKNOWN")]
)
def test_banner_refused(
    check: Callable[..., Run], smtp_server_factory: Callable[..., SmtpServer],
    mode: str, code: int, label: str,
) -> None:  # fmt: skip
    server = smtp_server_factory(banner_reply="554 5.3.2 Service unavailable")
    args = plain(server) if mode == "login" else message_args(server)[1:]
    run = check(f"--mode={mode}", *args)
    assert run.out == (
        f"{label}: Unable to connect to SMTP: session refused: 554 5.3.2 Service unavailable \n"
    )
    assert run.code == code


def test_helo_fallback_for_a_server_without_esmtp(
    check: Callable[..., Run], smtp_server_factory: Callable[..., SmtpServer]
) -> None:
    server = smtp_server_factory(ehlo_reply="502 5.5.2 Command not recognized", helo_accepted=True)
    run = check(*message_args(server))
    assert OK_MESSAGE.fullmatch(run.out), run.out
    assert server.sessions[0].commands[:2] == ["EHLO", "HELO"]


def test_ehlo_and_helo_refused(
    check: Callable[..., Run], smtp_server_factory: Callable[..., SmtpServer]
) -> None:
    server = smtp_server_factory(ehlo_reply="550 5.7.1 HELO rejected")
    run = check("--mode=login", *plain(server))
    assert (
        run.out == "CRITICAL: Unable to connect to SMTP: EHLO refused: 550 5.7.1 HELO rejected \n"
    )


@pytest.mark.parametrize(
    ("knob", "reply", "expected"),
    [
        ("mail_reply", "550 5.7.1 Sender denied", f"MAIL FROM <{FROM}> refused: 550 5.7.1 Sender denied"),
        ("rcpt_reply", "550 5.1.1 <probe@example.net>: Recipient address rejected",
         f"RCPT TO <{TO}> refused: 550 5.1.1 <probe@example.net>: Recipient address rejected"),
        ("data_reply", "554 5.7.1 Message rejected as spam", "message refused: 554 5.7.1 Message rejected as spam"),
    ],
)  # fmt: skip
def test_sending_refused_is_critical(
    check: Callable[..., Run],
    smtp_server_factory: Callable[..., SmtpServer],
    knob: str,
    reply: str,
    expected: str,
) -> None:
    server = smtp_server_factory(**{knob: reply})
    run = check(*message_args(server))
    assert run.out == f"CRITICAL: Unable to send message: {expected} \n"
    assert run.code == 2


def test_refusal_text_cannot_forge_perfdata(
    check: Callable[..., Run], smtp_server_factory: Callable[..., SmtpServer]
) -> None:
    server = smtp_server_factory(rcpt_reply="550 no | 'time'=0.001s;;;; \x1b[31mred")
    run = check(*message_args(server))
    assert run.code == 2
    assert "|" not in run.out and "\x1b" not in run.out
    assert run.out.count("\n") == 1


# -- servers that break ----------------------------------------------------------------------


def test_connection_refused(check: Callable[..., Run]) -> None:
    run = check("--mode=login", "--hostname=127.0.0.1", f"--port={refused_port()}")
    assert run.out == "CRITICAL: Unable to connect to SMTP: Connection refused \n"
    assert run.code == 2


def test_unresolvable_name(check: Callable[..., Run]) -> None:
    run = check(
        *["--mode=message", f"--hostname={UNRESOLVABLE_HOST}"],
        f"--smtp-from={FROM}",
        f"--smtp-to={TO}",
    )
    assert run.out.startswith("UNKNOWN: Unable to connect to SMTP: ")
    assert UNRESOLVABLE_HOST in run.out
    assert run.code == 3


@pytest.mark.parametrize(
    ("scenario", "phase_words"),
    [("silent", "waiting for the banner"), ("drip", "waiting for the banner")],
)
def test_deadline_holds_whatever_the_server_does(
    check: Callable[..., Run],
    raw_server_factory: Callable[..., RawServer],
    scenario: str,
    phase_words: str,
) -> None:
    server = raw_server_factory(scenario, drip_interval=0.2)
    started = time.monotonic()
    run = check("--mode=login", *plain(server), "--timeout=1")
    elapsed = time.monotonic() - started
    assert run.out == f"CRITICAL: Unable to connect to SMTP: timeout after 1s {phase_words} \n"
    assert elapsed < 2.0  # the bound: deadline plus at most one second


def test_timeout_in_message_mode_is_unknown_and_names_the_phase(
    check: Callable[..., Run], smtp_server_factory: Callable[..., SmtpServer]
) -> None:
    server = smtp_server_factory(command_delay=0.3)  # EHLO alone takes 0.3 s
    run = check(*message_args(server), "--timeout=0.5")
    assert run.out.startswith("UNKNOWN: ")
    assert re.search(r"timeout after 0\.5s (waiting for the|during) ", run.out), run.out
    assert run.code == 3


@pytest.mark.parametrize(
    ("scenario", "mode", "expected"),
    [
        ("endless_continuation", "login", "CRITICAL: Unable to connect to SMTP: reply longer than 100 lines \n"),
        ("huge_line", "login", "CRITICAL: Unable to connect to SMTP: reply line longer than 8192 bytes \n"),
        ("garbage", "login", "CRITICAL: Unable to connect to SMTP: unexpected reply 'HELLO WORLD' \n"),
        ("close_after_banner", "login", "CRITICAL: Unable to connect to SMTP: connection closed by the server \n"),
        ("close_mid_session", "message", "UNKNOWN: Unable to send message: connection closed by the server \n"),
    ],
)  # fmt: skip
def test_misbehaving_servers(
    check: Callable[..., Run],
    raw_server_factory: Callable[..., RawServer],
    scenario: str,
    mode: str,
    expected: str,
) -> None:
    server = raw_server_factory(scenario)
    args = plain(server) if mode == "login" else message_args(server)[1:]
    run = check(f"--mode={mode}", *args, "--timeout=5")
    assert run.out == expected


@pytest.mark.parametrize("scenario", ["invalid_utf8_banner", "injection_banner"])
def test_odd_but_valid_banners_pass(
    check: Callable[..., Run], raw_server_factory: Callable[..., RawServer], scenario: str
) -> None:
    server = raw_server_factory(scenario)
    run = check("--mode=message", *message_args(server)[1:], "--debug")
    assert OK_MESSAGE.fullmatch(run.out), run.out
    # The transcript shows server text, but one line per reply line and never raw controls.
    assert all(line.isprintable() for line in run.err.splitlines())


# -- generic output options -------------------------------------------------------------------


def test_output_json(check: Callable[..., Run], plain_server: SmtpServer) -> None:
    run = check("--mode=login", *plain(plain_server), "--output-json")
    document = json.loads(run.out)
    assert document["plugin"]["exit"] == "OK"
    assert document["plugin"]["mode"] == "login"
    assert document["plugin"]["perfdatas"][0]["label"] == "time"
    assert run.code == 0


def test_change_exit_changes_only_the_code(
    check: Callable[..., Run], plain_server: SmtpServer
) -> None:
    run = check(
        "--mode=login", *plain(plain_server), "--critical=0", "--change-exit=critical=warning"
    )
    assert run.out.startswith("CRITICAL: ") and run.code == 1


def test_output_file(check: Callable[..., Run], plain_server: SmtpServer, tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    run = check("--mode=login", *plain(plain_server), f"--output-file={path}")
    assert run.out == "" and run.code == 0
    assert OK_LOGIN.fullmatch(path.read_text())


# -- as a real process --------------------------------------------------------------------------


def test_as_a_process_with_exit_code(plain_server: SmtpServer) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "smtp_checks.cli.main", "check", PLUGIN, "--mode=login", *plain(plain_server), "--critical=0"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert completed.returncode == 2
    assert completed.stdout.startswith("CRITICAL: Response time ")


def test_perl_style_command_line_without_subcommand(plain_server: SmtpServer) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "smtp_checks.cli.main", PLUGIN, "--mode=login", *plain(plain_server)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert OK_LOGIN.fullmatch(completed.stdout), completed.stdout


def test_check_path_imports_neither_celery_nor_pydantic(plain_server: SmtpServer) -> None:
    code = (
        "import sys\n"
        "from smtp_checks.cli.main import main\n"
        f"rc = main(['check', '{PLUGIN}', '--mode=message', '--hostname={plain_server.host}',"
        f" '--port={plain_server.port}', '--smtp-options=layer=none',"
        f" '--smtp-from={FROM}', '--smtp-to={TO}'])\n"
        "heavy = sorted(m for m in ('celery', 'kombu', 'pydantic', 'redis', 'yaml') if m in sys.modules)\n"
        "print(rc, heavy)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert completed.stdout.splitlines()[-1] == "0 []", completed.stdout + completed.stderr


@pytest.mark.parametrize("mode", ["login", "message"])
def test_check_path_imports_no_asyncio_even_with_starttls(
    starttls_server: SmtpServer, pki: Pki, mode: str
) -> None:
    code = (
        "import sys\n"
        "from smtp_checks.cli.main import main\n"
        f"rc = main(['check', '{PLUGIN}', '--mode={mode}', '--hostname={starttls_server.host}',"
        f" '--port={starttls_server.port}', '--smtp-options=ssl_verify_ca={pki.ca_pem_path}',"
        f" '--smtp-from={FROM}', '--smtp-to={TO}'])\n"
        "heavy = sorted(m for m in ('asyncio', 'celery', 'pydantic', 'redis') if m in sys.modules)\n"
        "print(rc, heavy)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert completed.stdout.splitlines()[-1] == "0 []", completed.stdout + completed.stderr


def test_a_hostile_refusal_comes_out_as_one_harmless_line(
    check: Callable[..., Run], raw_server_factory: Callable[..., RawServer]
) -> None:
    server = raw_server_factory("injection_refusal")
    run = check("--mode=login", *plain(server))
    assert run.code == 2
    assert run.out.count("\n") == 1 and "|" not in run.out and "\x1b" not in run.out
    assert run.out.startswith("CRITICAL: Unable to connect to SMTP: session refused: 554 ")
