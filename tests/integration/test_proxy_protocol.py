"""`proxy_protocol=v1|v2` against a real Postfix whose `proxy` port takes only connections
that start with a PROXY header (`smtpd_upstream_proxy_protocol = haproxy`): the check sends
the header first, naming the real socket's addresses (Postfix logs the client address the
header names: here the source address the check bound to), and without it the port does not
answer. Through the CLI and a worker.
"""

from __future__ import annotations

import contextlib
import io
import re

import pytest

from smtp_checks.cli.main import main
from smtp_checks.shared.messages import Outcome
from smtp_checks.shared.probe.proxy_protocol import proxy_header
from tests.postfix import (
    PostfixInstance,
)
from tests.worker_harness import run_in_worker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def check(port: int, *options: str, debug: bool = False) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(
            ["check", "--plugin=apps::protocols::smtp::plugin", "--mode=login",
             "--hostname=127.0.0.1", f"--port={port}", "--timeout=3",
             "--smtp-options=layer=none", *(f"--smtp-options={option}" for option in options),
             *(["--debug"] if debug else [])]
        )  # fmt: skip
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(("version", "source"), [("v1", "127.0.0.2"), ("v2", "127.0.0.4")])
def test_the_header_goes_first_and_names_the_real_source(
    mta: PostfixInstance, version: str, source: str
) -> None:
    code, out, err = check(
        mta.ports["proxy"], f"proxy_protocol={version}", f"source_address={source}", debug=True
    )
    assert code == 0, out + err
    assert out.startswith("OK: Response time "), out
    mta.wait_for_log(rf"postfix/proxy/smtpd\[\d+\]: connect from \S+\[{re.escape(source)}\]")
    first = err.splitlines()[0]
    if version == "v1":
        assert first.startswith(f"C: PROXY TCP4 {source} 127.0.0.1 "), err
    else:
        assert first.startswith(f"C: <PROXY v2 header: {source}:"), err


def test_without_the_header_the_proxy_port_does_not_answer(mta: PostfixInstance) -> None:
    code, out, _ = check(mta.ports["proxy"])  # Postfix waits 5 s for a header, the check 3
    assert (code, out) == (
        2, "CRITICAL: Unable to connect to SMTP: timeout after 3s waiting for the banner \n"
    )  # fmt: skip


def test_a_worker_sends_the_header_the_config_asks_for(mta: PostfixInstance) -> None:
    result = run_in_worker(
        {
            "sites": {"paris": {}},
            "defaults": {"tls": "none", "timeout": 3},
            "hosts": [{"name": "mx", "address": "127.0.0.1", "port": mta.ports["proxy"],
                       "site": "paris", "proxy_protocol": "v2", "source_address": "127.0.0.5",
                       "checks": {"login": {}}}],
        }
    )  # fmt: skip
    assert result.outcome is Outcome.SUCCESS, result.detail
    mta.wait_for_log(r"postfix/proxy/smtpd\[\d+\]: connect from \S+\[127\.0\.0\.5\]")


def test_the_headers_bytes_follow_the_specification() -> None:
    # HAProxy's proxy-protocol.txt: section 2.1 (v1) and 2.2 (v2), TCP over IPv4 and IPv6.
    assert proxy_header("v1", ("192.0.2.1", 1234), ("198.51.100.2", 25)) == (
        b"PROXY TCP4 192.0.2.1 198.51.100.2 1234 25\r\n"
    )
    assert proxy_header("v1", ("2001:db8::1", 1234), ("2001:db8::2", 587)) == (
        b"PROXY TCP6 2001:db8::1 2001:db8::2 1234 587\r\n"
    )
    v4 = proxy_header("v2", ("192.0.2.1", 1234), ("198.51.100.2", 25))
    assert v4 == (
        b"\r\n\r\n\x00\r\nQUIT\n" + b"\x21\x11\x00\x0c" + bytes([192, 0, 2, 1, 198, 51, 100, 2])
        + b"\x04\xd2\x00\x19"
    )  # fmt: skip
    v6 = proxy_header("v2", ("2001:db8::1", 1234), ("2001:db8::2", 587))
    assert v6[12:16] == b"\x21\x21\x00\x24" and len(v6) == 16 + 36
