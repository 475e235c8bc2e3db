"""`smtp-checks enqueue --config FILE --host NAME --check login|message [--wait SECONDS]`:
one configured check run now through its site's queue (scheduler/adhoc.py); with `--wait`,
its output printed and its exit code returned, as the plugin would."""

from __future__ import annotations

import argparse
import sys

from kombu.exceptions import OperationalError

from smtp_checks.scheduler.adhoc import connect, enqueue_check, find_check
from smtp_checks.shared.adhoc_replies import AdhocReplies
from smtp_checks.shared.celery_app import check_queue
from smtp_checks.shared.config import load_config
from smtp_checks.shared.ledger import Ledger
from smtp_checks.shared.output.status import Status
from smtp_checks.shared.probe.spec import Mode
from smtp_checks.shared.redis_client import REDIS_DOWN
from smtp_checks.shared.result_output import render_result

UNKNOWN = int(Status.UNKNOWN)
_UNREACHABLE: tuple[type[BaseException], ...] = (OperationalError, *REDIS_DOWN)


def run_enqueue(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="smtp-checks enqueue",
        description="Run one configured check now through its site's queue.",
    )
    parser.add_argument("--config", required=True, help="the YAML configuration file")
    parser.add_argument("--host", required=True, help="the host's name in the config")
    parser.add_argument("--check", required=True, choices=[mode.value for mode in Mode])
    parser.add_argument(
        "--wait", type=float, metavar="SECONDS",
        help="wait this long for the result, print it as the plugin does and exit with its code",
    )  # fmt: skip
    args = parser.parse_args(argv)
    config = load_config(args.config)
    check = find_check(config, args.host, args.check)
    app, client = connect(config, wait=args.wait or 0.0)
    try:
        request = enqueue_check(
            config,
            args.host,
            args.check,
            app=app,
            ledger=Ledger(client, grace=config.centreon.orphan_grace),
        )
        if args.wait is None:
            sys.stdout.write(f"{request.run_id}\n")
            return 0
        result = AdhocReplies(client).wait(request.run_id, args.wait)
    except _UNREACHABLE as error:
        sys.stdout.write(
            f"UNKNOWN: cannot enqueue the check on {check_queue(check.site)}: {error}\n"
        )
        return UNKNOWN
    finally:
        client.close()
    if result is None:
        sys.stdout.write(
            f"UNKNOWN: no result within {args.wait:g} s from a worker on "
            f"{check_queue(check.site)} (run {request.run_id})\n"
        )
        return UNKNOWN
    rendered = render_result(result)
    sys.stdout.write(rendered.text if rendered.text.endswith("\n") else f"{rendered.text}\n")
    return rendered.exit_code
