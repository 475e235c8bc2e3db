"""`smtp-checks config check FILE` as a real process: exit codes, summary, every error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "deploy" / "examples").glob("*.yaml"))

VALID = """\
sites:
  paris: {rate_limit: 600/m}
  lyon: {}
hosts:
  - name: mx1
    address: 192.0.2.10
    site: paris
    username: monitor@example.com
    password: env:MX1_SMTP_PASSWORD
    checks:
      login: {warning: "2", critical: "5"}
      message: {from: monitor@example.com, to: probe@example.com, interval: 300}
  - {name: mx2, address: 192.0.2.11, site: lyon, checks: {login: {interval: 120}}}
"""

INVALID = """\
sites: {paris: {}}
hosts:
  - name: mx1
    address: 192.0.2.10
    site: lyon
    password: hunter2
    checks:
      message: {from: monitor@example.com}
"""


def config_check(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("SMTP_CHECKS_")}
    return subprocess.run(
        [sys.executable, "-m", "smtp_checks.cli.main", "config", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )


def test_a_valid_config_prints_a_summary(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(VALID)
    run = config_check("check", str(path))
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    assert run.stdout.splitlines() == [
        f"{path}: OK",
        "2 hosts, 3 checks, 2 sites",
        "site paris: 2 checks, 1.2 checks/min, rate limit 600/m per worker",
        "site lyon: 1 check, 0.5 checks/min, no rate limit",
        "forwarding to Centreon: none configured",
    ]


def test_an_invalid_config_prints_every_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(INVALID)
    run = config_check("check", str(path))
    assert run.returncode == 2
    assert run.stdout == ""
    assert sorted(run.stderr.splitlines()) == [
        f"{path}: hosts[0].checks.message.to: required",
        f"{path}: hosts[0].password: plain-text passwords are refused: write a reference, "
        "env:NAME (an environment variable on the worker) or file:PATH (a file on the worker)",
        f"{path}: hosts[0].site: unknown site 'lyon' (sites: paris)",
    ]
    assert "Traceback" not in run.stderr
    assert "hunter2" not in run.stderr


def test_sentinel_is_summed_up_and_a_half_configured_one_explained(tmp_path: Path) -> None:
    urls = "sentinel://10.0.0.1:26379/0;sentinel://10.0.0.2:26379/0;sentinel://10.0.0.3/0"
    path = tmp_path / "ha.yaml"
    path.write_text(f"broker_url: '{urls}'\nsentinel_master: smtp-checks\n" + VALID)
    run = config_check("check", str(path))
    assert run.returncode == 0, run.stderr
    assert "Redis behind Sentinel (broker_url): master smtp-checks, 3 sentinels" in run.stdout
    path.write_text(f"broker_url: '{urls}'\n" + VALID)
    run = config_check("check", str(path))
    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        f"{path}: sentinel_master: required: broker_url is a Sentinel URL: name the master "
        "the sentinels monitor (their `sentinel monitor NAME ...`)"
    ]


def test_a_yaml_error_and_a_missing_file_are_errors_not_tracebacks(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("sites: {paris: {}\n")
    run = config_check("check", str(path))
    assert run.returncode == 2
    assert run.stderr.startswith(f"{path}: line 2, column 1: YAML: ")
    run = config_check("check", str(tmp_path / "absent.yaml"))
    assert run.returncode == 2
    assert "cannot read" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("args", [(), ("chek", "x.yaml"), ("check",), ("check", "a", "b")])
def test_a_bad_sub_command_is_a_usage_error(args: tuple[str, ...]) -> None:
    run = config_check(*args)
    assert run.returncode == 2
    assert "usage: smtp-checks config check FILE" in run.stderr


def test_the_top_level_usage_lists_config_check() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "smtp_checks.cli.main", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert "config check FILE" in run.stdout


def test_there_are_examples() -> None:
    assert {p.name for p in EXAMPLES} >= {"single-site.yaml", "multi-site.yaml"}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_config_passes(example: Path) -> None:
    run = config_check("check", str(example))
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"{example}: OK\n")
