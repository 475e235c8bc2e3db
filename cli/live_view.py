"""The live view of `smtp-checks run --demo`: every result as it goes to Centreon, read from
the demo's command file, and every few seconds a summary line of the pipeline (checks per
second, in flight, queued, waiting for Centreon) from what `smtp-checks status` reads."""

from __future__ import annotations

import os
import select
import threading
import time
from pathlib import Path
from typing import TextIO

import redis

from smtp_checks.shared.config import Config
from smtp_checks.shared.pipeline_health import read_health
from smtp_checks.shared.redis_client import REDIS_DOWN

SUMMARY_EVERY = 5.0  # seconds between two summary lines

_STATUS = {"0": "OK", "1": "WARNING", "2": "CRITICAL", "3": "UNKNOWN"}
_COLOUR = {"0": "32", "1": "33", "2": "31", "3": "35"}


class CommandDisplay(threading.Thread):
    """Reads the demo's command file (a FIFO) and prints each result, as Centreon gets it."""

    def __init__(self, fifo: Path, out: TextIO) -> None:
        super().__init__(name="display", daemon=True)
        self.fifo = fifo
        self._out = out
        self._colour = out.isatty()
        self._lock = threading.Lock()  # results and summaries come from two threads
        self._done = threading.Event()
        if not fifo.exists():
            os.mkfifo(fifo, 0o600)
        self._fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)

    def run(self) -> None:
        buffer = b""
        while not self._done.is_set():
            ready, _, _ = select.select([self._fd], [], [], 0.2)
            if not ready:
                continue
            chunk = os.read(self._fd, 65536)
            if not chunk:  # no writer at the moment
                time.sleep(0.1)
                continue
            *lines, buffer = (buffer + chunk).split(b"\n")
            for line in lines:
                self._show(line.decode("utf-8", errors="replace"))

    def _show(self, line: str) -> None:
        stamp, _, command = line.partition("] ")
        fields = command.split(";", 4)
        if len(fields) != 5:
            return
        _, host, service, code, output = fields
        when = time.strftime("%H:%M:%S", time.localtime(int(stamp.lstrip("[") or 0)))
        status = _STATUS.get(code, code)
        if self._colour:
            status = f"\033[{_COLOUR.get(code, '0')}m{status:<8}\033[0m"
        self.write(f"{when}  {host:<12} {service:<13} {status:<8} {output}\n")

    def write(self, text: str) -> None:
        with self._lock:
            self._out.write(text)
            self._out.flush()

    def stop(self) -> None:
        self._done.set()
        self.join(2)
        os.close(self._fd)


class PipelineSummary:
    """Writes a summary line of the pipeline under the results, every `SUMMARY_EVERY` s."""

    def __init__(self, config: Config, client: redis.Redis, display: CommandDisplay) -> None:
        self._config = config
        self._client = client  # the embedded Redis: broker and state in one
        self._display = display
        self._next = time.monotonic() + SUMMARY_EVERY

    def maybe_show(self) -> None:
        if time.monotonic() < self._next:
            return
        self._next = time.monotonic() + SUMMARY_EVERY
        try:
            health = read_health(self._config, self._client, self._client, time.time())
        except REDIS_DOWN:
            return  # Redis restarting: the next line will say
        per_second = sum(site.checks_per_minute for site in health.sites) / 60
        in_flight = sum(site.in_flight for site in health.sites)
        queued = sum(site.queued or 0 for site in health.sites)
        waiting = sum(outbox.waiting for outbox in health.outboxes)
        self._display.write(
            f"-- {per_second:.1f} checks/s, {in_flight} in flight, {queued} queued, "
            f"{waiting} waiting for Centreon; pipeline {health.status.name}\n"
        )
