"""The CLI as a process: wall and CPU time of one `smtp-checks check --mode=login`, beside
`check_smtp` (Debian's monitoring-plugins-basic) run the same way against the same server.

Usage: python -m bench.cli_cost [--runs N]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

from bench.servers import server_process

CHECK_SMTP = "/usr/lib/nagios/plugins/check_smtp"


def _measure(argv: list[str], runs: int) -> tuple[float, float, float]:
    """Median wall ms, p90 wall ms and mean CPU ms (user + system) of `runs` executions."""
    walls = []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(runs):
        started = time.perf_counter()
        completed = subprocess.run(argv, capture_output=True, check=False)
        walls.append((time.perf_counter() - started) * 1000)
        if completed.returncode != 0:
            raise SystemExit(f"{argv[0]} failed: {completed.stdout!r} {completed.stderr!r}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000 / runs
    return statistics.median(walls), statistics.quantiles(walls, n=10)[-1], cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument(
        "--smtp-checks",
        help="the smtp-checks executable to time (default: this environment's, which "
        "`make` installs in editable mode: its import hook costs a few ms at start-up)",
    )
    args = parser.parse_args()
    smtp_checks = args.smtp_checks or shutil.which(
        "smtp-checks", path=os.path.dirname(sys.executable)
    )
    if smtp_checks is None:
        raise SystemExit("smtp-checks is not installed in this environment (make test does it)")
    with server_process() as server:
        port = server.port
        commands = {
            "smtp-checks check --mode=login": [
                smtp_checks, "check", "--plugin=apps::protocols::smtp::plugin", "--mode=login",
                "--hostname=127.0.0.1", f"--port={port}", "--smtp-options=layer=none",
            ],
            "check_smtp (C)": [CHECK_SMTP, "-H", "127.0.0.1", "-p", str(port)],
        }  # fmt: skip
        print(f"{'command':34s} {'wall p50 ms':>11s} {'wall p90 ms':>11s} {'cpu ms':>8s}")
        for name, argv in commands.items():
            if not os.path.exists(argv[0]):
                print(f"{name:34s} not installed (apt-get install monitoring-plugins-basic)")
                continue
            _measure(argv, 3)  # warm the page cache
            median, p90, cpu = _measure(argv, args.runs)
            print(f"{name:34s} {median:11.1f} {p90:11.1f} {cpu:8.1f}")


if __name__ == "__main__":
    main()
