"""`smtp-checks`: one entry point, one sub-command per role.

Sub-commands import their modules only when chosen: `smtp-checks check` runs as an active
check once per service and must start fast, so it never imports Celery or pydantic.
"""

from __future__ import annotations

import sys

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
  enqueue --config FILE --host NAME --check login|message [--wait SECONDS]
                           run one check now through its site's queue; with --wait, print
                           its output and exit with its code
"""


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0911 (one return per command)
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command.startswith("--"):
        # A Centreon command line written for the Perl plugin: `smtp-checks --plugin=...`.
        command, rest = "check", args
    if command == "check":
        from smtp_checks.cli.check import run_check  # noqa: PLC0415

        return run_check(rest)
    if command == "config":
        from smtp_checks.cli.config_check import run_config  # noqa: PLC0415

        return run_config(rest)
    if command == "run":
        from smtp_checks.cli.run import run_all  # noqa: PLC0415

        return run_all(rest)
    if command == "consumer":
        from smtp_checks.cli.consumer import run_consumer  # noqa: PLC0415

        return run_consumer(rest)
    if command == "beat":
        from smtp_checks.cli.beat import run_beat  # noqa: PLC0415

        return run_beat(rest)
    if command == "enqueue":
        from smtp_checks.cli.beat import run_enqueue  # noqa: PLC0415

        return run_enqueue(rest)
    if command == "worker":
        from smtp_checks.cli.worker import run_worker  # noqa: PLC0415

        return run_worker(rest)
    sys.stderr.write(f"smtp-checks: unknown command '{command}'\n{USAGE}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
