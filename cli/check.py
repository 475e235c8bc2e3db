"""`smtp-checks check`: the Perl plugin's behaviour, one check, plugin output and exit code.

It runs as an active check once per service, so it must start fast: it drives the probe over
a plain socket (shared/probe/socket_driver.py) and imports neither asyncio, pydantic nor
Celery (a test asserts it)."""

from __future__ import annotations

import sys
import time

from smtp_checks.cli.plugin_options import (
    CheckOptions,
    InfoRequest,
    OptionError,
    output_options_or_default,
    parse,
)
from smtp_checks.shared.mailbox.delivery import Delivery
from smtp_checks.shared.mailbox.spec import Wanted, leftover_age
from smtp_checks.shared.output.renderers import render_option_error
from smtp_checks.shared.output.report import report
from smtp_checks.shared.output.status import Status
from smtp_checks.shared.probe.result import ProbeResult
from smtp_checks.shared.probe.socket_driver import run_probe


def run_check(argv: list[str]) -> int:
    """Run one check as the command line says; return the exit code."""
    try:
        options = parse(argv)
    except OptionError as error:
        rendered = render_option_error(str(error), output_options_or_default(argv))
        _emit(rendered.text, None)
        return rendered.exit_code
    if isinstance(options, InfoRequest):
        _emit(options.text + "\n", None)
        return int(output_options_or_default(argv).opt_exit)
    return _check(options)


def _check(options: CheckOptions) -> int:
    started_at = time.time()
    result = run_probe(options.spec)
    if options.debug or options.spec.record_transcript:
        sys.stderr.write("".join(line + "\n" for line in result.transcript))
    output = report(
        result,
        options.spec.mode,
        options.thresholds,
        cert_thresholds=options.cert_thresholds,
        chain_thresholds=options.chain_thresholds,
        extra_perfdata=options.extra_perfdata,
        float_precision=options.output.float_precision,
        delivery=_delivery(options, result, started_at),
    )
    rendered = output.render(options.output)
    _emit(rendered.text, options.output_file)
    return rendered.exit_code


def _delivery(options: CheckOptions, result: ProbeResult, started_at: float) -> Delivery | None:
    """Mode roundtrip: once the message is sent, the verdict on its delivery."""
    message = options.spec.message
    if options.receive is None or not result.ok or result.sent_after is None or message is None:
        return None
    from smtp_checks.cli.receive import await_delivery  # noqa: PLC0415 (asyncio: this mode only)

    age = leftover_age(options.receive.timeout, options.spec.timeout)
    wanted = Wanted(message.token or "", message.check_tag or "", age)
    return await_delivery(options.receive, wanted, started_at + result.sent_after)


def _emit(text: str, output_file: str | None) -> None:
    # Arguments that are not valid UTF-8 arrive as surrogates and may be quoted in an error:
    # Centreon gets them escaped (`\udcff`), never invalid bytes, and the write never fails.
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if output_file is None:
        sys.stdout.write(text)
        return
    try:
        with open(output_file, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as error:
        sys.stdout.write(f"UNKNOWN: Cannot write output file '{output_file}': {error.strerror} \n")
        raise SystemExit(int(Status.UNKNOWN)) from None
