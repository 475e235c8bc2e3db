"""Prometheus metrics: what every role exports besides its own (build info, Redis
reconnects), and how a role serves them (`--metrics HOST:PORT`, at `/metrics`).

A role started alone serves its own process: its metrics, and prometheus-client's process,
platform and garbage-collector metrics. Under `smtp-checks run` the roles are child
processes: they write their metrics to files in the directory named by
`PROMETHEUS_MULTIPROC_DIR` (prometheus-client's multi-process mode, chosen when the library
is imported), and `run` serves them all from one port (`serve_children`), with each
child's process metrics labelled by its role.

The role modules define their own metrics (workers/metrics.py, scheduler/metrics.py,
consumer/metrics.py). Names follow Prometheus's conventions: the `smtp_checks_` prefix,
base units (`_seconds`), `_total` for counters; the README lists them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from smtp_checks.shared.errors import SetupError
from smtp_checks.shared.messages import SCHEMA_VERSION
from smtp_checks.shared.version import package_version

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

BUILD_INFO = Gauge(
    "smtp_checks_build_info",
    "Always 1: the role's version and the schema version of its messages.",
    ["role", "version", "schema_version"],
    multiprocess_mode="livemax",
)
REDIS_RECONNECTS = Counter(
    "smtp_checks_redis_reconnects_total",
    "Times the role lost Redis (or its broker) and retried after a pause.",
    ["role"],
)


def parse_address(text: str) -> tuple[str, int]:
    """(host, port) of `HOST:PORT`, `[IPv6]:PORT` or `:PORT` (every address); SetupError
    for anything else."""
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise SetupError(f"{text!r}: expected HOST:PORT (e.g. 127.0.0.1:9711 or :9711)")
    host = host.removeprefix("[").removesuffix("]")
    return host or "0.0.0.0", int(port)  # noqa: S104 (":PORT" asks for every address)


def measuring(address: str | None) -> bool:
    """Whether this process records metrics: asked to serve them, or a child of `run` that
    writes them for its parent to serve."""
    return address is not None or MULTIPROCESS_ENV in os.environ


def start_role_metrics(role: str, address: str | None) -> None:
    """Announce the role's build, and serve its metrics at `address` if given."""
    BUILD_INFO.labels(role, package_version(), str(SCHEMA_VERSION)).set(1)
    if address is not None:
        _serve(address, registry=None)


def serve_children(
    address: str, directory: Path, processes: Callable[[], Mapping[str, int]]
) -> None:
    """Serve, at `address`, the metrics the child processes write to `directory`, and the
    process metrics of `processes()` (role name -> pid), each labelled by its role."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    registry.register(_ChildProcesses(processes))
    _serve(address, registry=registry)


def forget_child(directory: Path, pid: int) -> None:
    """A child exited: its live gauges (in flight, leader...) no longer count."""
    mark_process_dead(pid, path=str(directory))  # type: ignore[no-untyped-call]


def _serve(address: str, *, registry: CollectorRegistry | None) -> None:
    host, port = parse_address(address)
    try:
        if registry is None:
            start_http_server(port, addr=host)
        else:
            start_http_server(port, addr=host, registry=registry)
    except OSError as error:
        raise SetupError(f"cannot serve metrics on {address}: {error}") from error


class _ChildProcesses(Collector):
    """prometheus-client's process metrics (CPU, memory, open files...) of each child,
    with a `role` label: the collector reads /proc/PID of the pid it is given."""

    def __init__(self, processes: Callable[[], Mapping[str, int]]) -> None:
        self._processes = processes

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        for role, pid in self._processes().items():
            reader = ProcessCollector(pid=functools.partial(int, pid), registry=None)
            for metric in reader.collect():
                family = families.setdefault(
                    metric.name, Metric(metric.name, metric.documentation, metric.type)
                )
                for sample in metric.samples:
                    labels = {**sample.labels, "role": role}
                    family.add_sample(sample.name, labels, sample.value)
        return families.values()
