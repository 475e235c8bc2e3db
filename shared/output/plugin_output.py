"""What a check reports, collected as a Centreon plugin mode does (`output_add`,
`perfdata_add`), and its rendering: the bytes and exit code the plugin prints."""

from __future__ import annotations

import time

from smtp_checks.shared.output.options import OutputOptions
from smtp_checks.shared.output.perfdata import Perfdata
from smtp_checks.shared.output.renderers import (
    STATUS_METRIC,
    Rendered,
    Report,
    chomp,
    kept_perfdata,
    render_openmetrics,
    render_report,
    text_parts,
)
from smtp_checks.shared.output.status import Status, worst


class PluginOutput:
    """Collects what a check reports, as a mode does with output_add / perfdata_add."""

    def __init__(self) -> None:
        self._shorts: dict[Status, list[str]] = {}
        self._longs: list[str] = []
        self._perfdata: list[Perfdata] = []

    def add_message(self, status: Status, short: str | None, long: str | None = None) -> None:
        """A short message (first line; sets the state) and/or a long one (`--verbose` lines)."""
        if short is not None:
            self._shorts.setdefault(status, []).append(chomp(short))
        if long is not None:
            self._longs.append(chomp(long))

    def add_perfdata(self, perfdata: Perfdata) -> None:
        self._perfdata.append(perfdata)

    @property
    def status(self) -> Status:
        """The global state (CRITICAL > UNKNOWN > WARNING > OK), before `--change-exit`."""
        return worst(*self._shorts)

    def passive_parts(self, options: OutputOptions) -> tuple[str, str]:
        """Output and perfdata apart, as a passive result carries them: the bytes of the
        text rendering's first line on either side of its ` | `."""
        short, items = text_parts(self._report(options), options)
        if not items:
            return short, ""
        return short.removesuffix(" "), " ".join(items)

    def render(self, options: OutputOptions, now: float | None = None) -> Rendered:
        """The plugin's stdout and exit code. `now` (epoch seconds) stamps OpenMetrics lines;
        the current time when omitted."""
        status = self.status
        if options.output_format == "openmetrics":
            metrics = [*self._perfdata, Perfdata(STATUS_METRIC, float(status))]
            text = render_openmetrics(metrics, options, time.time() if now is None else now)
            return Rendered(text, options.exit_code(status))
        return Rendered(render_report(self._report(options), options), options.exit_code(status))

    def _report(self, options: OutputOptions) -> Report:
        return Report(
            shorts=self._shorts,
            longs=self._longs,
            perfdata=None if options.ignore_perfdata else kept_perfdata(self._perfdata, options),
            status=self.status,
            exit_word=self.status.name,
            show_long=options.shows_long_output,
            change_long=True,
        )
