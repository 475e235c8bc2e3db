"""`auth=XOAUTH2` against aiosmtpd with an XOAUTH2 mechanism as Google's and Microsoft's
servers speak it: the password is the bearer token; a bad token's base64 JSON error is
decoded into the reason; the token never shows, in the output nor the transcript. From the
CLI and from the config (`auth: XOAUTH2`, the token a reference like every secret).
"""

from __future__ import annotations

import base64
import contextlib
import io
from collections.abc import Callable

import pytest

from smtp_checks.cli.main import main
from smtp_checks.shared.config import parse_config
from smtp_checks.shared.messages import CheckRequest, Outcome
from smtp_checks.shared.result_output import render_result
from tests.smtp_servers import SmtpServer
from tests.worker_harness import run_in_worker

pytestmark = [pytest.mark.integration]

USER, TOKEN = "monitor@example.com", "ya29.a0-test-bearer-token"


@pytest.fixture
def oauth_server(smtp_server_factory: Callable[..., SmtpServer]) -> SmtpServer:
    return smtp_server_factory(
        username=USER, password=TOKEN, auth_mechanisms=("XOAUTH2",), auth_require_tls=False
    )


def check(server: SmtpServer, token: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(
            ["check", "--plugin=apps::protocols::smtp::plugin", "--mode=login",
             "--hostname=127.0.0.1", f"--port={server.port}", "--smtp-options=layer=none",
             "--smtp-options=auth=XOAUTH2", f"--username={USER}", f"--password={token}",
             "--debug"]
        )  # fmt: skip
    return code, out.getvalue(), err.getvalue()


def test_a_valid_token_logs_in(oauth_server: SmtpServer) -> None:
    code, out, err = check(oauth_server, TOKEN)
    assert code == 0, out
    assert [(a.mechanism, a.success, a.username) for a in oauth_server.auth_attempts] == [
        ("XOAUTH2", True, USER)
    ]
    assert "C: AUTH XOAUTH2 <redacted>" in err, err
    encoded = base64.b64encode(f"user={USER}\x01auth=Bearer {TOKEN}\x01\x01".encode()).decode()
    assert TOKEN not in out + err and encoded not in out + err


def test_a_refused_token_shows_the_servers_decoded_error(oauth_server: SmtpServer) -> None:
    code, out, err = check(oauth_server, "expired-token")
    assert code == 2, out
    assert out == (
        "CRITICAL: Unable to connect to SMTP: authentication failed: 535 5.7.8 Authentication "
        "credentials invalid (status 401, schemes bearer, scope https://mail.google.com/) \n"
    )
    assert "expired-token" not in out + err


def test_the_config_takes_auth_xoauth2_with_a_token_reference(
    oauth_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MX_OAUTH_TOKEN", TOKEN)
    settings = {
        "sites": {"paris": {}},
        "defaults": {"tls": "none"},
        "hosts": [{"name": "mx", "address": "127.0.0.1", "port": oauth_server.port,
                   "site": "paris", "username": USER, "password": "env:MX_OAUTH_TOKEN",
                   "auth": "XOAUTH2", "checks": {"login": {}}}],
    }  # fmt: skip
    [scheduled] = parse_config(settings).scheduled_checks()
    request = CheckRequest.from_scheduled(scheduled, scheduled_for=0.0, stale_at=60.0)
    assert TOKEN not in request.model_dump_json()  # the message carries the reference only
    result = run_in_worker(settings)
    assert result.outcome is Outcome.SUCCESS, render_result(result).text
    assert oauth_server.auth_attempts[-1].mechanism == "XOAUTH2"
