"""The pipeline's health (shared/pipeline_health.py) as plugin text: what `smtp-checks
status` prints, and what the consumer's self-check forwards to Centreon
(consumer/self_check.py). One wording for both, so Centreon shows what `status` says.

A report has a status, a first line (the summary) and perfdata; `status` adds one line per
part below it (Centreon's long output).
"""

from __future__ import annotations

from dataclasses import dataclass

from smtp_checks.shared.output.perfdata import Perfdata
from smtp_checks.shared.output.status import Status
from smtp_checks.shared.pipeline_health import OutboxHealth, PipelineHealth, SiteHealth


@dataclass(frozen=True)
class Report:
    status: Status
    summary: str  # the first line's text, after `STATUS: `
    perfdata: list[Perfdata]

    @property
    def output(self) -> str:
        return f"{self.status.name}: {self.summary}"

    @property
    def perfdata_text(self) -> str:
        return " ".join(item.render() for item in self.perfdata)

    @property
    def line(self) -> str:
        """The plugin's first line: output, `|`, perfdata."""
        return f"{self.output} | {self.perfdata_text}"


def pipeline_report(health: PipelineHealth) -> Report:
    """The whole pipeline: its worst status, its problems or its figures."""
    workers = sum(len(site.workers) for site in health.sites)
    queued = sum(site.queued or 0 for site in health.sites)
    waiting = sum(outbox.waiting for outbox in health.outboxes)
    summary = "; ".join(health.problems) or (
        f"{len(health.sites)} sites, {workers} workers, {queued} queued, "
        + (f"{waiting} results waiting for Centreon" if waiting else "outboxes empty")
    )
    perfdata = [
        *(Perfdata(f"queued_{site.site}", site.queued or 0, min=0) for site in health.sites),
        *(Perfdata(f"workers_{site.site}", len(site.workers), min=0) for site in health.sites),
        *(
            Perfdata(f"checks_per_minute_{site.site}", site.checks_per_minute, min=0)
            for site in health.sites
        ),
        *(Perfdata(f"outbox_{box.forwarder}", box.waiting, min=0) for box in health.outboxes),
        Perfdata("orphans_last_hour", health.orphans_last_hour, min=0),
    ]
    return Report(health.status, summary, perfdata)


def site_report(site: SiteHealth) -> Report:
    """One site: its problems, or its line of `status`."""
    perfdata = [
        Perfdata("queued", site.queued or 0, min=0),
        Perfdata("workers", len(site.workers), min=0),
        Perfdata("checks_per_minute", site.checks_per_minute, min=0),
    ]
    return Report(site.status, "; ".join(site.problems) or site_line(site), perfdata)


def long_output(health: PipelineHealth) -> list[str]:
    """The lines under the first one: each site, the beat, the consumers, each outbox."""
    lines = [f"site {site.site} [{site.status.name}]: {site_line(site)}" for site in health.sites]
    lines.append(_beat_line(health))
    lines.append(f"consumers: {', '.join(health.consumers) or 'none alive'}")
    lines += [_outbox_line(box, health.at) for box in health.outboxes]
    lines.append(f"orphans in the last hour: {health.orphans_last_hour}")
    return lines


def site_line(site: SiteHealth) -> str:
    queued = "?" if site.queued is None else str(site.queued)
    oldest = f", oldest {site.oldest_queued_for:.0f} s" if site.oldest_queued_for else ""
    gone = f", gone: {', '.join(site.workers_gone)}" if site.workers_gone else ""
    return (
        f"{len(site.workers)} worker(s) ({site.in_flight} of {site.concurrency} in flight"
        f"{gone}), {site.checks_per_minute:.0f} of {site.asked_per_minute:.0f} checks/min, "
        f"queued {queued}{oldest}"
    )


def _beat_line(health: PipelineHealth) -> str:
    if health.beat_leader is None:
        return f"beat: no leader ({len(health.beats)} alive)"
    last = (
        f", last enqueue {health.at - health.last_enqueue_at:.0f} s ago"
        if health.last_enqueue_at is not None
        else ""
    )
    return f"beat: {health.beat_leader} leads{last} ({len(health.beats)} alive)"


def _outbox_line(box: OutboxHealth, now: float) -> str:
    parts = [f"{box.waiting} waiting"]
    if box.oldest_for is not None:
        parts.append(f"oldest {box.oldest_for:.0f} s")
    if box.delivered_at is not None:
        parts.append(f"last delivery {now - box.delivered_at:.0f} s ago")
    if box.error and (box.failed_at or 0) >= (box.delivered_at or 0):
        parts.append(f"last error {now - (box.failed_at or now):.0f} s ago: {box.error}")
    return f"outbox {box.forwarder} [{box.status.name}]: {', '.join(parts)}"
