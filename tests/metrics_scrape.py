"""Reading a role's live `/metrics` the way Prometheus does (prometheus-client's own parser)."""

from __future__ import annotations

import json
import re
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "smtp-checks.json"
# The series of each type of family: a counter `x` is read as `x_total`.
_SERIES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "info": ("_info",),
}
_METRIC_NAME = re.compile(r"\b((?:smtp_checks|process)_[a-z0-9_]+)")


@dataclass(frozen=True)
class Scrape:
    samples: list[Sample]
    names: set[str]  # every series name exported (with or without samples yet)

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples `name` whose labels include `labels`."""
        return sum(
            sample.value
            for sample in self.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        )

    def labels(self, name: str, label: str) -> set[str]:
        return {s.labels[label] for s in self.samples if s.name == name and label in s.labels}


def scrape(url: str) -> Scrape:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples: list[Sample] = []
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        # The names a query may read, whether or not the family has samples yet.
        names.update(family.name + suffix for suffix in _SERIES.get(family.type, ("",)))
        samples += family.samples
    return Scrape(samples, names)


def dashboard_metric_names() -> set[str]:
    """Every metric name a query of the Grafana dashboard reads."""
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("expr", "query", "definition") and isinstance(value, str):
                    found.update(_METRIC_NAME.findall(value))
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads(DASHBOARD.read_text()))
    return found
