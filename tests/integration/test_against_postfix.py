"""The plugin's own modes against a real Postfix (tests/postfix.py), beside the aiosmtpd tests:
login with STARTTLS verified by the tests' CA, on [::1] too; AUTH on the submission port
(STARTTLS required, then PLAIN or LOGIN against Cyrus SASL), a wrong password refused;
implicit TLS on the smtps port; a message sent through submission and found in Postfix's
Maildir; a recipient Postfix refuses (relaying unauthenticated) as CRITICAL."""

from __future__ import annotations

import contextlib
import io
import re
import uuid

import pytest

from smtp_checks.cli.main import main
from tests.postfix import (
    PROBE_PASSWORD,
    PROBE_USER,
    PostfixInstance,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

USER, PASSWORD = PROBE_USER, PROBE_PASSWORD
OK_LOGIN = re.compile(r"OK: Response time \d+\.\d{3} second\(s\) \| 'time'=\d+\.\d{3}s;;;;\n")


def check(
    mta: PostfixInstance, service: str, *args: str, host: str = "127.0.0.1"
) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(
            ["check", "--plugin=apps::protocols::smtp::plugin", f"--hostname={host}",
             f"--port={mta.ports[service]}", "--timeout=10",
             f"--smtp-options=ssl_verify_ca={mta.ca}", *args]
        )  # fmt: skip
    return code, out.getvalue()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_login_with_starttls_verified(mta: PostfixInstance, host: str) -> None:
    if host == "::1" and not mta.ipv6:
        pytest.fail("IPv6 loopback is missing: the CI machine has it")
    code, out = check(mta, "plain", "--mode=login", host=host)
    assert (code, bool(OK_LOGIN.fullmatch(out))) == (0, True), out
    mta.wait_for_log(rf"postfix/smtpd\[\d+\]: Anonymous TLS connection established from \S+\[{re.escape(host)}\]|"
                     rf"postfix/smtpd\[\d+\]: Untrusted TLS connection established from \S+\[{re.escape(host)}\]")  # fmt: skip


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_auth_on_submission_after_starttls(mta: PostfixInstance, mechanism: str) -> None:
    code, out = check(
        mta, "submission", "--mode=login", f"--username={USER}", f"--password={PASSWORD}",
        f"--smtp-options=auth={mechanism}",
    )  # fmt: skip
    assert (code, bool(OK_LOGIN.fullmatch(out))) == (0, True), out
    # Postfix counts the commands of each session: STARTTLS, then a successful AUTH.
    mta.wait_for_log(
        r"postfix/submission/smtpd\[\d+\]: disconnect from \S+ ehlo=2 starttls=1 auth=1 quit=1"
    )


def test_a_wrong_password_is_critical_with_postfixs_reply(mta: PostfixInstance) -> None:
    code, out = check(mta, "submission", "--mode=login", f"--username={USER}", "--password=wrong")
    assert code == 2, out
    assert out.startswith(
        "CRITICAL: Unable to connect to SMTP: authentication failed: 535 5.7.8 Error: "
        "authentication failed:"
    ), out
    assert "wrong" not in out.split("failed:", 2)[-1]  # never the password


def test_implicit_tls_with_auth_on_smtps(mta: PostfixInstance) -> None:
    code, out = check(
        mta, "smtps", "--mode=login", "--smtp-options=layer=ssl", f"--username={USER}",
        f"--password={PASSWORD}",
    )  # fmt: skip
    assert (code, bool(OK_LOGIN.fullmatch(out))) == (0, True), out


def test_a_message_through_submission_reaches_the_mailbox(mta: PostfixInstance) -> None:
    subject = f"smtp-checks probe {uuid.uuid4().hex}"
    code, out = check(
        mta, "submission", "--mode=message", f"--username={USER}", f"--password={PASSWORD}",
        f"--smtp-from={USER}", f"--smtp-to=probe@{mta.domain}",
        f"--smtp-send-options=subject={subject}",
    )  # fmt: skip
    assert code == 0, out
    assert out.startswith("OK: Message sent - Response time "), out
    delivered = mta.wait_for_messages(1)
    assert any(message["Subject"] == subject for message in mta.messages()), delivered


def test_a_recipient_postfix_refuses_is_critical(mta: PostfixInstance) -> None:
    code, out = check(
        mta, "plain", "--mode=message", f"--smtp-from={USER}", "--smtp-to=x@outside.example"
    )
    assert code == 2, out
    assert out == (
        "CRITICAL: Unable to send message: RCPT TO <x@outside.example> refused: 554 5.7.1 "
        "<x@outside.example>: Relay access denied \n"
    )
