"""Word a probe result as the Perl plugin does: status messages and perfdata.

This is where a measurement meets its thresholds. The CLI, the worker and the consumer all
call `report`, so the same measurement always gives the same bytes.
"""

from __future__ import annotations

from smtp_checks.shared.output.perfdata import Perfdata
from smtp_checks.shared.output.plugin_output import PluginOutput
from smtp_checks.shared.output.status import Status
from smtp_checks.shared.output.thresholds import Thresholds
from smtp_checks.shared.probe.failures import FailureKind, ProbeFailure
from smtp_checks.shared.probe.phases import Phase
from smtp_checks.shared.probe.result import ProbeResult, RelayAnswer
from smtp_checks.shared.probe.spec import Mode

NO_THRESHOLDS = Thresholds(None, None)


def report(
    result: ProbeResult,
    mode: Mode,
    thresholds: Thresholds,
    *,
    cert_thresholds: Thresholds = NO_THRESHOLDS,
    chain_thresholds: Thresholds = NO_THRESHOLDS,
    extra_perfdata: bool = False,
    float_precision: int = 8,
) -> PluginOutput:
    output = PluginOutput()
    if result.address is not None:  # shown with --verbose
        output.add_message(Status.OK, None, long=f"Server address {result.address}")
    if result.failure is not None:
        status, text = failure_message(result.failure, mode)
        output.add_message(status, text)
        return output
    if mode is Mode.MESSAGE:
        output.add_message(Status.OK, "Message sent")
    timed = thresholds.evaluate(result.time, float_precision)
    if mode is Mode.RELAY and result.relay is not None:
        output.add_message(*relay_verdict(result.relay))
        if timed is not Status.OK:  # the verdict is the news; a slow server adds to it
            output.add_message(timed, f"Response time {result.time:.3f} second(s)")
    else:
        output.add_message(timed, f"Response time {result.time:.3f} second(s)")
    output.add_perfdata(
        Perfdata(
            label="time",
            value=result.time,
            unit="s",
            warning=thresholds.warning,
            critical=thresholds.critical,
            precision=3,
        )
    )
    tls = result.tls
    if cert_thresholds != NO_THRESHOLDS or extra_perfdata:
        days = tls.cert_days_left if tls else None
        _report_expiry(output, _LEAF, days, cert_thresholds, float_precision)
    if chain_thresholds != NO_THRESHOLDS or extra_perfdata:
        days = tls.chain_days_left if tls else None
        _report_expiry(output, _CHAIN, days, chain_thresholds, float_precision)
    if extra_perfdata:
        _report_phases(output, result)
    if tls is not None:  # shown with --verbose
        output.add_message(Status.OK, None, long=f"TLS {tls.version} {tls.cipher}")
    return output


def relay_verdict(answer: RelayAnswer) -> tuple[Status, str]:
    """OK when the outside recipient is refused for good, CRITICAL when it is accepted (an
    open relay), WARNING for a 4xx (the server may only be throttling), UNKNOWN otherwise."""
    rcpt = f"RCPT TO <{answer.recipient}>"
    if answer.accepted:
        return Status.CRITICAL, f"Open relay: {rcpt} accepted: {answer.reply}"
    if 500 <= answer.code < 600:
        return Status.OK, f"Relay refused: {answer.reply}"
    if 400 <= answer.code < 500:
        return Status.WARNING, f"Relay refused for now only: {rcpt}: {answer.reply}"
    return Status.UNKNOWN, f"Relay test unclear: {rcpt} answered {answer.reply}"


def failure_message(failure: ProbeFailure, mode: Mode) -> tuple[Status, str]:
    """The plugin's status and words for a failed session.

    As in the plugin, login mode makes every failure CRITICAL, while message mode makes a
    failure to connect UNKNOWN (relay: CRITICAL, as login; a refused sender leaves the relay
    untested, UNKNOWN). Sending refused by the server is CRITICAL (the plugin said
    OK for a refused recipient: we do not); sending that breaks otherwise is UNKNOWN.
    """
    if failure.kind is FailureKind.UNEXPECTED:  # the server said what it must not: every mode
        return Status.CRITICAL, f"Unexpected reply: {failure.detail}"
    if not failure.phase.sends_message:
        status = Status.UNKNOWN if mode is Mode.MESSAGE else Status.CRITICAL
        return status, f"Unable to connect to SMTP: {failure.detail}"
    if mode is Mode.RELAY:  # the server refused our sender: the relay is not tested
        return Status.UNKNOWN, f"Relay not tested: {failure.detail}"
    status = Status.CRITICAL if failure.kind is FailureKind.REJECTED else Status.UNKNOWN
    return status, f"Unable to send message: {failure.detail}"


# (perfdata label, what expires) for the leaf certificate and for the chain the server sent.
_LEAF = ("cert_days_left", "Certificate")
_CHAIN = ("chain_days_left", "Certificate chain")


def _report_expiry(
    output: PluginOutput,
    what: tuple[str, str],
    days: float | None,
    thresholds: Thresholds,
    float_precision: int,
) -> None:
    label, name = what
    if days is None:
        if thresholds != NO_THRESHOLDS:
            output.add_message(Status.UNKNOWN, "No server certificate to check (TLS not used)")
        return
    if thresholds != NO_THRESHOLDS:
        output.add_message(
            thresholds.evaluate(days, float_precision),
            f"{name} expires in {days:.0f} day(s)",
        )
    output.add_perfdata(
        Perfdata(
            label=label,
            value=days,
            unit="d",
            warning=thresholds.warning,
            critical=thresholds.critical,
            precision=0,
        )
    )


def _report_phases(output: PluginOutput, result: ProbeResult) -> None:
    for phase in Phase:
        if phase in result.phase_times:
            output.add_perfdata(
                Perfdata(
                    label=f"time_{phase.value}",
                    value=result.phase_times[phase],
                    unit="s",
                    precision=3,
                )
            )
