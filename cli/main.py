"""`smtp-checks`: one entry point, one sub-command per role.

Sub-commands import their modules only when chosen: `smtp-checks check` runs as an active
check once per service and must start fast, so it never imports Celery or pydantic.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

from smtp_checks.shared.errors import ConfigError, SmtpChecksError

USAGE = """\
usage: smtp-checks COMMAND [options]

commands:
  check [plugin options]   one check now, output and exit code of centreon_protocol_smtp.pl
                           (smtp-checks check --mode=login --help lists the options)
  config check FILE        validate a config file; print a summary or every error
  worker --config FILE --site SITE
                           run the checks of queue checks.SITE
  consumer --config FILE   turn results into Centreon passive results and forward them
  run --config FILE | --demo [--data-dir DIR] [--duration S]
                           every role on this machine, with a private Redis (no broker to install)
  beat --config FILE [--lock-ttl S]
                           schedule every configured check (one leader among several beats)
  enqueue --config FILE --host NAME --check login|message|relay [--wait SECONDS]
                           run one check now through its site's queue; with --wait, print
                           its output and exit with its code
  status --config FILE [--json]
                           the pipeline's health, as a plugin line (so Centreon can check it)
                           or JSON
"""


_COMMANDS = {
    "check": ("smtp_checks.cli.check", "run_check"),
    "config": ("smtp_checks.cli.config_check", "run_config"),
    "run": ("smtp_checks.cli.run", "run_all"),
    "consumer": ("smtp_checks.cli.consumer", "run_consumer"),
    "beat": ("smtp_checks.cli.beat", "run_beat"),
    "enqueue": ("smtp_checks.cli.enqueue", "run_enqueue"),
    "status": ("smtp_checks.cli.status", "run_status"),
    "worker": ("smtp_checks.cli.worker", "run_worker"),
}


def main(argv: list[str] | None = None) -> int:
    """Run a sub-command; its exit code. Every error of ours ends here: its message on
    standard error, its exit code (shared/errors.py)."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command.startswith("--"):
        # A Centreon command line written for the Perl plugin: `smtp-checks --plugin=...`.
        command, rest = "check", args
    if command not in _COMMANDS:
        sys.stderr.write(f"smtp-checks: unknown command '{command}'\n{USAGE}")
        return 2
    module, function = _COMMANDS[command]
    # Only the chosen command's modules are imported: `check` must start fast.
    run: Callable[[list[str]], int] = getattr(importlib.import_module(module), function)
    try:
        return run(rest)
    except ConfigError as error:
        sys.stderr.write(f"{error}\n")  # one line per problem, each naming its file
        return error.exit_code
    except SmtpChecksError as error:
        sys.stderr.write(f"smtp-checks {command}: {error}\n")
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
