"""`ip=4|6` and `source_address=` against a real Postfix listening on 127.0.0.1 and [::1]: the
check connects in the family asked for, from the address asked for (Postfix's log names the
client address it saw), and names the address it used in `--verbose` and in a failure; an
address that is not this machine's, or families that disagree, are refused before connecting.
Through the config and a worker too, with a site's egress address as the default.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from smtp_checks.cli.main import main
from smtp_checks.shared.config import ConfigError, parse_config
from smtp_checks.shared.messages import Outcome
from smtp_checks.shared.result_output import render_result
from tests.postfix import (
    PostfixInstance,
    probe_target,
)
from tests.smtp_servers import SmtpServer, refused_port
from tests.worker_harness import run_in_worker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

PLUGIN = "--plugin=apps::protocols::smtp::plugin"


@pytest.fixture(scope="module")
def mta(
    postfix_factory: Callable[..., PostfixInstance],
    tmp_path_factory: pytest.TempPathFactory,
) -> PostfixInstance:
    mta = probe_target(postfix_factory, tmp_path_factory.mktemp("addressing-pki"))
    if not mta.ipv6:
        pytest.fail("these tests need IPv6 loopback (::1), which the CI machine has")
    return mta


def check(host: str, port: int, *options: str, verbose: bool = False) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(
            ["check", PLUGIN, "--mode=login", f"--hostname={host}", f"--port={port}",
             "--smtp-options=layer=none", "--timeout=5",
             *(f"--smtp-options={option}" for option in options),
             *(["--verbose"] if verbose else [])]
        )  # fmt: skip
    return code, out.getvalue()


@pytest.mark.parametrize(
    ("host", "ip", "client"), [("::1", "6", "::1"), ("127.0.0.1", "4", "127.0.0.1")]
)
def test_the_check_connects_in_the_family_asked_for(
    mta: PostfixInstance, host: str, ip: str, client: str
) -> None:
    code, out = check(host, mta.ports["plain"], f"ip={ip}")
    assert code == 0, out
    mta.wait_for_log(rf"postfix/smtpd\[\d+\]: connect from \S+\[{client}\]")


def test_a_name_without_an_address_of_the_family_asked_for_says_so() -> None:
    code, out = check("localhost", 25, "ip=6")  # localhost is 127.0.0.1 only here
    assert (code, out) == (
        2,
        "CRITICAL: Unable to connect to SMTP: no IPv6 address for localhost \n",
    )


def test_a_failure_and_verbose_name_the_address_a_name_resolved_to(
    plain_server: SmtpServer,
) -> None:
    code, out = check("localhost", plain_server.port, "ip=4", verbose=True)
    assert code == 0, out
    assert out.splitlines()[1] == "Server address 127.0.0.1", out
    code, out = check("localhost", refused_port(), "ip=4")
    assert (code, out) == (
        2, "CRITICAL: Unable to connect to SMTP: Connection refused (127.0.0.1) \n"
    )  # fmt: skip


def test_the_check_connects_from_the_source_address(mta: PostfixInstance) -> None:
    code, out = check("127.0.0.1", mta.ports["plain"], "source_address=127.0.0.2")
    assert code == 0, out
    mta.wait_for_log(r"postfix/smtpd\[\d+\]: connect from \S+\[127\.0\.0\.2\]")


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        (["source_address=192.0.2.1"], "Wrong smtp-options source_address: 192.0.2.1 is not "
         "an address of this machine (Cannot assign requested address)"),
        (["source_address=mx.example"], "Wrong smtp-options source_address: 'mx.example' is "
         "not an IP address"),
        (["ip=5"], "Wrong smtp-options ip: '5' is not an address family: 4 or 6"),
        (["ip=4", "source_address=::1"], "Wrong smtp-options ip or source_address: address "
         "families disagree: the host IPv4, source_address IPv6, ip IPv4"),
        (["ip=6"], "Wrong smtp-options ip or source_address: address families disagree: the "
         "host IPv4, ip IPv6"),
    ],
)  # fmt: skip
def test_bad_addressing_is_refused_before_connecting(
    options: list[str], reason: str, plain_server: SmtpServer
) -> None:
    code, out = check("127.0.0.1", plain_server.port, *options)
    assert (code, out) == (3, f"UNKNOWN: {reason} \n")
    assert plain_server.sessions == []


def _config(mta: PostfixInstance, **host: object) -> dict[str, object]:
    return {
        "sites": {"paris": {"source_address": "127.0.0.3"}},
        "defaults": {"tls": "none"},
        "hosts": [{"name": "mx", "address": "::1", "port": mta.ports["plain"], "site": "paris",
                   "checks": {"login": {}}, **host}],
    }  # fmt: skip


def _run(config: dict[str, object]) -> tuple[str, str | None, Outcome]:
    result = run_in_worker(config)
    return render_result(result).text, result.server_address, result.outcome


def test_a_worker_takes_ip_and_the_sites_egress_address_from_the_config(
    mta: PostfixInstance,
) -> None:
    config = _config(mta, address="127.0.0.1", ip=4)  # the site's 127.0.0.3 applies
    text, _, outcome = _run(config)
    assert outcome is Outcome.SUCCESS, text
    mta.wait_for_log(r"postfix/smtpd\[\d+\]: connect from \S+\[127\.0\.0\.3\]")
    text, _, outcome = _run(_config(mta, source_address="::1"))  # the host's wins: IPv6
    assert outcome is Outcome.SUCCESS, text


def test_a_worker_without_the_configured_source_address_fails_clearly(
    mta: PostfixInstance,
) -> None:
    text, _, outcome = _run(_config(mta, address="127.0.0.1", source_address="192.0.2.1"))
    assert outcome is Outcome.NETWORK
    assert text == (
        "CRITICAL: Unable to connect to SMTP: cannot bind to source address 192.0.2.1: "
        "Cannot assign requested address \n"
    )


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ({}, "the host IPv6, source_address IPv4"),  # the site's egress address, 127.0.0.3
        ({"ip": 4}, "the host IPv6, source_address IPv4, ip IPv4"),
        ({"address": "127.0.0.1", "ip": 6}, "the host IPv4, source_address IPv4, ip IPv6"),
    ],
)
def test_the_config_refuses_families_that_disagree(
    mta: PostfixInstance, host: dict[str, object], reason: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(_config(mta, **host))
    [problem] = raised.value.problems
    assert problem.location == "hosts[0].checks.login"
    assert problem.reason == f"address families disagree: {reason}"


def _with_hosts_file(hosts: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run `argv` in a mount namespace of its own where /etc/hosts is `hosts`: a name with
    both an IPv6 and an IPv4 address, which this machine's resolver has none of, without
    touching the machine's own /etc/hosts (root and util-linux's unshare, as on CI)."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        message = "needs root and unshare (util-linux) for a private /etc/hosts"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    script = f'mount --bind "{hosts}" /etc/hosts && exec "$@"'
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sh", *argv],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.fixture
def dual_stack_name(tmp_path: Path) -> Path:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n::1 dual.test\n127.0.0.1 dual.test\n")
    return hosts


def _cli(port: int, *options: str) -> list[str]:
    return [
        sys.executable, "-m", "smtp_checks.cli.main", "check", PLUGIN, "--mode=login",
        "--hostname=dual.test", f"--port={port}", "--smtp-options=layer=none", "--timeout=5",
        "--verbose", *(f"--smtp-options={option}" for option in options),
    ]  # fmt: skip


def test_a_name_falls_back_to_its_next_address_in_the_other_family(
    plain_server: SmtpServer, dual_stack_name: Path
) -> None:
    # The resolver gives ::1 first; the server listens on 127.0.0.1 only.
    done = _with_hosts_file(dual_stack_name, _cli(plain_server.port))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[1] == "Server address 127.0.0.1", done.stdout
    done = _with_hosts_file(dual_stack_name, _cli(plain_server.port, "ip=6"))
    assert (done.returncode, done.stdout.splitlines()[0]) == (
        2, "CRITICAL: Unable to connect to SMTP: Connection refused (::1) "
    ), done.stdout + done.stderr  # fmt: skip


def test_a_name_none_of_whose_addresses_answers_names_them_all(dual_stack_name: Path) -> None:
    done = _with_hosts_file(dual_stack_name, _cli(refused_port()))
    assert (done.returncode, done.stdout.splitlines()[0]) == (
        2, "CRITICAL: Unable to connect to SMTP: Connection refused (::1, 127.0.0.1) "
    ), done.stdout + done.stderr  # fmt: skip
