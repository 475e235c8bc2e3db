"""No input crashes `smtp-checks check`: every bad option or value is `UNKNOWN: Wrong <option>:
<what is wrong>` (exit 3), found before any connection is made, with the rules the config's
validation uses (shared/probe/validation.py).

The named cases run against a listening aiosmtpd server, which shows that nothing connected
(before these rules, each of them reached the server or crashed on the way with a Python
traceback). The property-based test feeds arbitrary text to every option and asserts a
plugin line and an exit code of 0-3.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtp_checks.cli.main import main
from tests.smtp_servers import SmtpServer, refused_port

PLUGIN = "--plugin=apps::protocols::smtp::plugin"
MESSAGE = ["--mode=message", "--smtp-from=monitor@example.com", "--smtp-to=probe@example.net"]
STATUS_WORDS = ("OK: ", "WARNING: ", "CRITICAL: ", "UNKNOWN: ")


def run(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(["check", PLUGIN, "--timeout=5", *args])
    return code, out.getvalue()


def _not_pem(tmp_path: Path) -> str:
    path = tmp_path / "not-a-ca.pem"
    path.write_text("this is not a certificate\n")
    return str(path)


CASES = [
    (["--mode=login", "--smtp-options=hello=probe\r\nRSET"],
     "Wrong smtp-options hello: must be one line (it holds a CR, LF or another control character)"),
    ([*MESSAGE, "--smtp-send-options=subject=a\r\nBcc: victim@example.org"],
     "Wrong smtp-send-options subject: must be one line"),
    ([*MESSAGE, "--smtp-send-options=contenttype=text/plain\r\nX-Injected: 1"],
     "Wrong smtp-send-options contenttype: must be one line"),
    ([*MESSAGE, "--smtp-send-options=charset=klingon"],
     "Wrong smtp-send-options charset: unknown charset 'klingon'"),
    (["--mode=message", "--smtp-from=monitor\udcff@example.com", "--smtp-to=probe@example.net"],
     "Wrong --smtp-from: is not valid UTF-8"),
    (["--mode=login", "--smtp-options=ssl_verify_ca=/nonexistent/ca.pem"],
     "Wrong smtp-options ssl_verify_ca: '/nonexistent/ca.pem' is not a file"),
    (["--mode=login", "--smtp-options=ssl_verify_ca={not_pem}"],
     "Wrong smtp-options ssl_verify_ca: '{not_pem}' holds no PEM certificate"),
    ([*MESSAGE, "--smtp-send-options=cc=not an address"],
     "Wrong smtp-send-options cc: 'not an address' is not a mail address (local@domain)"),
    (["--mode=message", "--smtp-from=monitor@example.com", "--smtp-to=probe"],
     "Wrong --smtp-to: 'probe' is not a mail address"),
    (["--mode=login", "--timeout=nan"], "Wrong timeout option: 'nan' is not a positive number"),
    (["--mode=login", "--timeout=1e309"], "Wrong timeout option: 'inf' is not a positive number"),
    (["--mode=login", "--smtp-options=timeout=1e6"],
     "Wrong smtp-options timeout option: '1e+06' seconds is more than a day (86400)"),
    (["--mode=login", "--smtp-options=tls_min_version=1.1"],
     "Wrong smtp-options tls_min_version: '1.1' is not a TLS version this probe can require"),
    (["--mode=login", "--smtp-options=proxy_protocol=v3"],
     "Wrong smtp-options proxy_protocol: 'v3' is not a PROXY protocol version: v1 or v2"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "reason"), CASES)
def test_a_bad_value_is_unknown_naming_its_option_before_any_connection(
    args: list[str], reason: str, plain_server: SmtpServer, tmp_path: Path
) -> None:
    not_pem = _not_pem(tmp_path)
    args = [arg.format(not_pem=not_pem) for arg in args]
    code, out = run(f"--hostname={plain_server.host}", f"--port={plain_server.port}", *args)
    assert code == 3, out
    assert out.startswith(f"UNKNOWN: {reason.format(not_pem=not_pem)}"), out
    assert "Traceback" not in out and out.count("\n") == 1, out
    assert plain_server.sessions == []  # nothing connected


def test_a_host_name_too_long_for_dns_is_unknown_at_once() -> None:
    code, out = run("--mode=login", f"--hostname={'a' * 300}.example.com")
    assert (code, out) == (
        3, "UNKNOWN: Wrong --hostname: is 312 characters long (a host name has at most 253) \n"
    )  # fmt: skip


def test_opt_exit_sets_the_code_of_a_bad_value() -> None:
    code, out = run("--mode=login", "--hostname=bad..name", "--opt-exit=critical")
    assert code == 2, out
    assert out.startswith("CRITICAL: Wrong --hostname: 'bad..name' has an empty label"), out


OPTIONS = [
    "--port", "--timeout", "--warning", "--critical", "--warning-cert-days", "--smtp-from",
    "--smtp-to", "--username", "--password", "--smtp-options", "--smtp-send-options",
    "--float-precision", "--change-exit", "--filter-perfdata", "--range-perfdata",
    "--change-short-output", "--opt-exit",
]  # fmt: skip
# Values as Centreon could pass them: any text, surrogate-escaped bytes (not UTF-8) included,
# and `key=value` forms for the options that take them.
_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
_KEYS = st.sampled_from(
    ["hello", "layer", "port", "auth", "timeout", "ssl_verify_mode", "ssl_verify_ca", "subject",
     "body", "contenttype", "charset", "cc", "bcc", "replyto", "debug", "anything", "ip",
     "source_address", "proxy_protocol", "tls_min_version", "expect", "command", "response"]
)  # fmt: skip
_VALUES = _TEXT | st.builds(lambda key, value: f"{key}={value}", _KEYS, _TEXT)


@pytest.mark.parametrize("option", OPTIONS)
# Derandomised: every run explores the same examples, so a red CI is a bug, never bad luck.
# To explore more, raise max_examples locally (a random run found `--timeout=nan`).
@settings(
    max_examples=60, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip
@given(value=_VALUES)
def test_any_value_of_any_option_gives_a_plugin_line_and_exit_code(option: str, value: str) -> None:
    assert_plugin_line(
        *run(*MESSAGE, "--hostname=127.0.0.1", f"--port={PORT}", f"{option}={value}")
    )


def assert_plugin_line(code: int, out: str) -> None:
    """What Centreon reads: a plugin line, an exit code of 0-3, valid UTF-8."""
    assert 0 <= code <= 3, out
    assert out.startswith(STATUS_WORDS), out
    out.encode("utf-8")  # valid UTF-8, whatever came in


PORT = refused_port()  # nothing listens: a value that passes fails fast, CRITICAL


ROUNDTRIP = [
    "--mode=roundtrip", "--smtp-from=monitor@example.com", "--smtp-to=probe@example.net",
    "--receive-protocol=imap", "--receive-hostname=127.0.0.1", "--receive-username=probe",
    "--receive-password=secret",
]  # fmt: skip
RECEIVE_OPTIONS = [
    "--receive-protocol", "--receive-hostname", "--receive-port", "--receive-username",
    "--receive-password", "--receive-options", "--receive-timeout", "--warning-delivery",
    "--critical-delivery",
]  # fmt: skip
_RECEIVE_KEYS = st.sampled_from(["layer", "ssl_verify_mode", "ssl_verify_ca", "mailbox", "junk"])
_RECEIVE_VALUES = _TEXT | st.builds(lambda key, value: f"{key}={value}", _RECEIVE_KEYS, _TEXT)


@pytest.mark.parametrize("option", RECEIVE_OPTIONS)
@settings(
    max_examples=30, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip
@given(value=_RECEIVE_VALUES)
def test_any_value_of_a_receive_option_gives_a_plugin_line_and_exit_code(
    option: str, value: str
) -> None:
    # The SMTP side is refused at once: a value that passes never waits for a mailbox.
    assert_plugin_line(
        *run(*ROUNDTRIP, "--hostname=127.0.0.1", f"--port={PORT}", f"{option}={value}")
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([a for a in ROUNDTRIP if not a.startswith("--receive-protocol")],
         "UNKNOWN: Please set receive-protocol option (imap or pop3)"),
        ([*ROUNDTRIP, "--receive-protocol=smtp"], "UNKNOWN: Wrong receive-protocol 'smtp'"),
        ([*ROUNDTRIP, "--receive-options=junk=Junk", "--receive-protocol=pop3"],
         "UNKNOWN: Wrong receive-options junk: folders need IMAP (POP3 has one)"),
        ([*ROUNDTRIP, "--receive-options=mailbox=Probes", "--receive-protocol=pop3"],
         "UNKNOWN: Wrong receive-options mailbox: folders need IMAP"),
        ([*ROUNDTRIP, "--receive-options=mailbox=IN\rBOX"], "UNKNOWN: Wrong receive-options mailbox"),
        ([*ROUNDTRIP, "--receive-timeout=soon"], "UNKNOWN: Wrong receive-timeout option 'soon'"),
        ([*ROUNDTRIP, "--warning-delivery=abc"], "UNKNOWN: Wrong warning-delivery threshold"),
        ([*ROUNDTRIP, "--receive-options=folder=x"], "UNKNOWN: Unknown receive-options key 'folder'"),
        ([*ROUNDTRIP, "--receive-options=ssl_verify_mode=maybe"],
         "UNKNOWN: Wrong ssl_verify_mode 'maybe' (SSL_VERIFY_NONE or 0, SSL_VERIFY_PEER or 1)"),
    ],
)  # fmt: skip
def test_a_bad_receive_option_is_unknown_naming_it(
    args: list[str], expected: str, plain_server: SmtpServer
) -> None:
    code, out = run(*args, "--hostname=127.0.0.1", f"--port={plain_server.port}")
    assert (code, out[: len(expected)]) == (3, expected), out
    assert plain_server.connections == 0  # found before connecting
