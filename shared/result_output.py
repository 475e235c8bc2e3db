"""Word a CheckResult as Centreon output: the same bytes `smtp-checks check` prints for the
same measurement, and plugin-style UNKNOWNs for checks that never ran."""

from __future__ import annotations

from smtp_checks.shared.messages import CheckResult, Outcome
from smtp_checks.shared.output.options import OutputOptions
from smtp_checks.shared.output.plugin_output import PluginOutput
from smtp_checks.shared.output.renderers import Rendered
from smtp_checks.shared.output.report import report
from smtp_checks.shared.output.status import Status
from smtp_checks.shared.output.thresholds import ThresholdError, Thresholds

_NOT_RUN_PREFIX = {
    Outcome.STALE: "Could not start check in time",
    Outcome.CREDENTIAL: "Cannot run check",
    Outcome.THROTTLED: "Cannot run check",
}


def result_output(result: CheckResult) -> PluginOutput:
    if not result.outcome.ran:
        output = PluginOutput()
        prefix = _NOT_RUN_PREFIX.get(result.outcome, "Cannot run check")
        output.add_message(Status.UNKNOWN, f"{prefix}: {result.detail} (worker {result.worker})")
        return output
    try:
        thresholds = Thresholds.parse(result.warning, result.critical)
    except ThresholdError as error:  # validated upstream; a hand-made message may not be
        output = PluginOutput()
        output.add_message(Status.UNKNOWN, str(error))
        return output
    if result.mailbox is not None:
        return _look_output(result)
    return report(result.probe_result(), result.mode, thresholds, delivery=result.delivery)


def _look_output(result: CheckResult) -> PluginOutput:
    """A round trip's receive step on its own (the consumer joins it to its send step
    before anything reaches Centreon): the status the look itself has."""
    output = PluginOutput()
    if result.outcome is not Outcome.SUCCESS:
        output.add_message(Status.UNKNOWN, f"Cannot check the mailbox: {result.detail}")
    elif result.mailbox is not None and result.mailbox.found_in is not None:
        output.add_message(Status.OK, f"Message found in {result.mailbox.found_in}")
    else:
        output.add_message(Status.OK, "Message not found yet")
    return output


def render_result(result: CheckResult, options: OutputOptions | None = None) -> Rendered:
    """The plugin's text and exit code for `result`."""
    return result_output(result).render(options or OutputOptions(mode=result.mode.value))


def orphan_output(
    site_queue: str, waited: float, *, taken_by: str | None = None, taken_for: float = 0.0
) -> PluginOutput:
    """For a run whose result never came: operators must see a dead site, or a dead worker."""
    output = PluginOutput()
    if taken_by is None:
        text = (
            f"(service check orphaned: no worker on {site_queue} ran this check within "
            f"{waited:.0f} s, is a worker of that site running?)"
        )
    else:
        text = (
            f"(service check orphaned: worker {taken_by} took this check {taken_for:.0f} s ago "
            "and returned no result, did it die?)"
        )
    output.add_message(Status.UNKNOWN, text)
    return output


def starved_output(
    silent_for: float,
    site: str,
    *,
    runs_per_minute: float,
    asked_per_minute: float,
    queue_depth: int | None,
    workers: int,
) -> PluginOutput:
    """For a service of a live site without a real result for too long: why, in the site's
    own figures."""
    output = PluginOutput()
    depth = "?" if queue_depth is None else str(queue_depth)
    output.add_message(
        Status.UNKNOWN,
        f"no result for {silent_for:.0f} s: site {site} runs {runs_per_minute:.0f} of the "
        f"{asked_per_minute:.0f} checks per minute its config asks for (queue {depth}, "
        f"{workers} worker{'' if workers == 1 else 's'})",
    )
    return output
