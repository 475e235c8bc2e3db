"""The CLI as a process, pair by pair: `smtp-checks check --mode=login` against the Perl
plugin it replaces (`centreon_protocol_smtp.pl`, where it is installed) and against
`check_smtp` (Debian's monitoring-plugins-basic), on the same local servers, in clear text
and with STARTTLS and AUTH.

Each round runs every command once, in turn (A B C A B C ...): absolute times on these
shared machines move by a factor of 2 to 3 from one day to the next, so the figure to quote
is the median of the ratios, pair by pair. The Perl plugin is found with `--perl-plugin
DIR` (a `src/centreon_plugins.pl` beside a `lib` holding Email::Send::SMTP::Gmail, as
../shared/reference/centreon-smtp-plugin.md says how to set up); without it, that column
is left out. Time a regular install (`pip install .`), not an editable one: an editable
install's modules are compiled afresh by every process (PYTHONDONTWRITEBYTECODE is set on
these machines).

Usage: python -m bench.cli_cost [--pairs N] [--smtp-checks PATH] [--perl-plugin DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.servers import server_process
from tests.smtp_servers import TEST_PASSWORD, TEST_USER

CHECK_SMTP = "/usr/lib/nagios/plugins/check_smtp"
PLUGIN = "--plugin=apps::protocols::smtp::plugin"


def _time(argv: list[str]) -> float:
    """Wall seconds of one run; it must succeed."""
    started = time.perf_counter()
    completed = subprocess.run(argv, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {completed.stdout!r} {completed.stderr!r}")
    return elapsed


def _commands(
    smtp_checks: str, perl: Path | None, plain: int, starttls: int, ca_file: str
) -> dict[str, dict[str, list[str]]]:
    """For each case, the commands to compare; the first is ours."""
    auth = [f"--username={TEST_USER}", f"--password={TEST_PASSWORD}"]
    cases: dict[str, dict[str, list[str]]] = {
        "login, clear text": {
            "smtp-checks": [smtp_checks, "check", PLUGIN, "--mode=login", "--hostname=127.0.0.1",
                            f"--port={plain}", "--smtp-options=layer=none"],
            "check_smtp": [CHECK_SMTP, "-H", "127.0.0.1", "-p", str(plain)],
        },
        "login, STARTTLS + AUTH": {
            "smtp-checks": [smtp_checks, "check", PLUGIN, "--mode=login", "--hostname=127.0.0.1",
                            f"--port={starttls}", f"--smtp-options=ssl_verify_ca={ca_file}", *auth],
            "check_smtp": [CHECK_SMTP, "-H", "127.0.0.1", "-p", str(starttls), "-S"],
        },
    }  # fmt: skip
    if perl is not None:
        script = ["perl", f"-I{perl / 'lib'}", str(perl / "src" / "centreon_plugins.pl"), PLUGIN]
        # The plugin never verifies certificates, and starts TLS only when it authenticates.
        cases["login, clear text"]["perl plugin"] = [
            *script,
            "--mode=login",
            "--hostname=127.0.0.1",
            f"--port={plain}",
            "--smtp-options=layer=none",
        ]
        cases["login, STARTTLS + AUTH"]["perl plugin"] = [
            *script, "--mode=login", "--hostname=127.0.0.1", f"--port={starttls}",
            "--smtp-options=layer=tls", *auth,
        ]  # fmt: skip
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--smtp-checks", help="the smtp-checks executable (default: this venv's)")
    parser.add_argument("--perl-plugin", type=Path, help="the Perl plugin's directory")
    args = parser.parse_args()
    smtp_checks = args.smtp_checks or shutil.which(
        "smtp-checks", path=os.path.dirname(sys.executable)
    )
    if smtp_checks is None:
        raise SystemExit("smtp-checks is not installed in this environment (make test does it)")
    with (
        server_process() as plain,
        server_process(
            tls="starttls", require_starttls=True, username=TEST_USER, password=TEST_PASSWORD
        ) as starttls,
    ):
        cases = _commands(
            smtp_checks, args.perl_plugin, plain.port, starttls.port, starttls.ca_file
        )
        print(f"{args.pairs} rounds, each command once per round, in turn; wall times")
        print(
            f"{'case':24s} {'command':12s} {'median ms':>10s}   ratio smtp-checks / it (median of pairs)"
        )
        for case, commands in cases.items():
            runnable = {name: argv for name, argv in commands.items() if shutil.which(argv[0])}
            for argv in runnable.values():
                _time(argv)  # warm the page cache, and check it works
            times: dict[str, list[float]] = {name: [] for name in runnable}
            for _ in range(args.pairs):
                for name, argv in runnable.items():
                    times[name].append(_time(argv))
            ours = times["smtp-checks"]
            for name, walls in times.items():
                ratio = (
                    ""
                    if name == "smtp-checks"
                    else f"{statistics.median(a / b for a, b in zip(ours, walls, strict=True)):.2f}"
                )
                print(f"{case:24s} {name:12s} {statistics.median(walls) * 1000:10.1f}   {ratio}")


if __name__ == "__main__":
    main()
