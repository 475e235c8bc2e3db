"""Every benchmark in bench/ still runs against the code as it is now, on a small load.

No figure is asserted (timing belongs in the benchmarks themselves, not in pass/fail tests):
what is asserted is that each one reads today's messages and keys and finishes cleanly, so
the figures in BENCHMARKS.md can be produced again from a clean checkout.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_fixtures import flushed_redis_db

ROOT = Path(__file__).resolve().parents[2]

SMALL_RUNS = {
    "probe_throughput": ["--checks", "50"],
    "consumer_throughput": ["--results", "200"],
    "forwarder_throughput": ["--results", "200", "--delay", "0.05"],
    "consumer_restart": ["--rounds", "1", "--delay", "0.05"],
    "result_backlog": ["--checks", "200", "--minutes", "10"],
    "beat_lateness": ["--checks", "200", "--interval", "5", "--duration", "5"],
    "worker_throughput": ["--checks", "100", "--concurrency", "50"],
    "metrics_cost": ["--checks", "100", "--concurrency", "50", "--pairs", "1", "--hosts", "100"],
    "worker_concurrency": ["--checks", "50", "--concurrency", "50", "--rounds", "1", "--hold", "0.2"],
    "cli_cost": ["--pairs", "2"],
    "probe_side_by_side": ["--other", str(ROOT), "--pairs", "1", "--checks", "100"],
    "overload": ["--checks", "20", "--interval", "2", "--hold", "0.3", "--concurrency", "1",
                 "--overload", "8", "--calm", "8"],
    "roundtrip_cost": ["--round-trips", "3", "--hold", "2"],
    "soak": ["--duration", "5", "--warmup", "3", "--hosts", "40", "--servers", "1",
             "--concurrency", "20", "--check-smtp-runs", "5"],
}  # fmt: skip


def _require(program: str) -> None:
    if shutil.which(program) or Path(program).exists():
        return
    message = f"{program} is not installed (.ci/run installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI=true: the benchmarks must run")
    pytest.skip(message)


@pytest.fixture
def bench_databases() -> Iterator[None]:
    """The Redis databases the benchmarks flush and fill (9, 10, 14), flushed around."""
    with contextlib.ExitStack() as stack:
        for db in (9, 10, 14):
            stack.enter_context(contextlib.contextmanager(flushed_redis_db)(db))
        yield


@pytest.mark.integration
@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", sorted(SMALL_RUNS))
def test_the_benchmark_runs_on_a_small_load(name: str, bench_databases: None) -> None:
    if name in ("cli_cost", "soak"):
        _require("/usr/lib/nagios/plugins/check_smtp")
    if name in ("soak", "overload"):
        _require("redis-server")
    if name in ("overload", "roundtrip_cost"):
        _require("/usr/sbin/nagios4")
    completed = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", *SMALL_RUNS[name]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    report = completed.stdout + completed.stderr
    assert completed.returncode == 0, report[-3000:]
    assert "Traceback" not in report, report[-3000:]
    if name == "soak":
        assert re.search(r"^\s+LOST\s+0$", completed.stdout, re.MULTILINE), completed.stdout
    if name == "overload":
        assert "half capacity:" in completed.stdout, completed.stdout
    if name == "roundtrip_cost":
        assert re.search(r"^held\s+\d", completed.stdout, re.MULTILINE), completed.stdout
