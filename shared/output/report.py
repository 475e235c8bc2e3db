"""Word a probe result as the Perl plugin does: status messages and perfdata.

This is where a measurement meets its thresholds. The CLI, the worker and the consumer all
call `report`, so the same measurement always gives the same bytes.
"""

from __future__ import annotations

from datetime import UTC, datetime

from smtp_checks.shared.mailbox.delivery import Delivery
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
    delivery: Delivery | None = None,
) -> PluginOutput:
    """`delivery`: a round trip's verdict on the message it sent (None before the receive
    side has one, or in another mode)."""
    output = PluginOutput()
    if result.address is not None:  # shown with --verbose
        output.add_message(Status.OK, None, long=f"Server address {result.address}")
    if result.failure is not None:
        status, text = failure_message(result.failure, mode)
        output.add_message(status, text)
        return output
    delivered: Perfdata | None = None
    if delivery is not None:
        delivered = _report_delivery(output, delivery, float_precision)
    elif mode.sends_message:
        output.add_message(Status.OK, "Message sent")
    _report_time(output, result, mode, thresholds, float_precision)
    if delivered is not None:
        output.add_perfdata(delivered)
    tls = result.tls
    if cert_thresholds != NO_THRESHOLDS or extra_perfdata:
        days = tls.cert_days_left if tls else None
        _report_expiry(output, _LEAF, days, cert_thresholds, float_precision)
    if chain_thresholds != NO_THRESHOLDS or extra_perfdata:
        days = tls.chain_days_left if tls else None
        _report_expiry(output, _CHAIN, days, chain_thresholds, float_precision)
    if extra_perfdata:
        _report_phases(output, result)
        if delivery is not None:
            _report_hops(output, delivery)
    if tls is not None:  # shown with --verbose
        output.add_message(Status.OK, None, long=f"TLS {tls.version} {tls.cipher}")
    return output


def _report_time(
    output: PluginOutput,
    result: ProbeResult,
    mode: Mode,
    thresholds: Thresholds,
    float_precision: int,
) -> None:
    """The response time against its thresholds (after a relay test's verdict, only when
    it alerts: the verdict is the news), and its perfdata."""
    timed = thresholds.evaluate(result.time, float_precision)
    if mode is Mode.RELAY and result.relay is not None:
        output.add_message(*relay_verdict(result.relay))
        if timed is not Status.OK:
            output.add_message(timed, f"Response time {result.time:.3f} second(s)")
    else:
        output.add_message(timed, f"Response time {result.time:.3f} second(s)")
    output.add_perfdata(_seconds("time", result.time, thresholds))


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
        status = Status.UNKNOWN if mode.sends_message else Status.CRITICAL
        return status, f"Unable to connect to SMTP: {failure.detail}"
    if mode is Mode.RELAY:  # the server refused our sender: the relay is not tested
        return Status.UNKNOWN, f"Relay not tested: {failure.detail}"
    status = Status.CRITICAL if failure.kind is FailureKind.REJECTED else Status.UNKNOWN
    return status, f"Unable to send message: {failure.detail}"


def _report_delivery(
    output: PluginOutput, delivery: Delivery, float_precision: int
) -> Perfdata | None:
    """A round trip's verdict: delivered (its time against the delivery thresholds), to a
    junk folder (WARNING), not within the receive timeout (CRITICAL), or unknown. The
    delivery time's perfdata, when it has one."""
    if delivery.failure is not None:
        output.add_message(Status.UNKNOWN, f"Cannot check the mailbox: {delivery.failure}")
        return None
    if delivery.folder is None or delivery.seconds is None:
        sent = datetime.fromtimestamp(delivery.sent_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        output.add_message(
            Status.CRITICAL,
            f"Message not delivered within {delivery.timeout:g} s "
            f"(sent {sent}, token {delivery.token})",
        )
        return None
    thresholds = Thresholds.parse(delivery.warning, delivery.critical)
    status = thresholds.evaluate(delivery.seconds, float_precision)
    if delivery.junk:
        output.add_message(Status.WARNING, f"Delivered to {delivery.folder}")
    output.add_message(status, f"Message delivered in {delivery.seconds:.3f} s")
    if delivery.bound is not None:  # shown with --verbose
        output.add_message(
            Status.OK,
            None,
            long=f"Delivery time measured to within {delivery.bound:.1f} s (the time between "
            f"the last two looks into {delivery.folder}; token {delivery.token})",
        )
    return _seconds("delivery", delivery.seconds, thresholds)


def _seconds(label: str, value: float, thresholds: Thresholds) -> Perfdata:
    """A duration measured against its thresholds (`time`, `delivery`), to the millisecond."""
    return Perfdata(
        label=label,
        value=value,
        unit="s",
        warning=thresholds.warning,
        critical=thresholds.critical,
        precision=3,
    )


def _report_hops(output: PluginOutput, delivery: Delivery) -> None:
    """The time between successive `Received:` headers (the mail servers' own clocks)."""
    for number, seconds in enumerate(delivery.hops, start=1):
        output.add_perfdata(Perfdata(label=f"hop{number}", value=seconds, unit="s", precision=0))


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
