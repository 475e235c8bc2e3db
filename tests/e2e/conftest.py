"""Fixtures of the end-to-end tests: pipelines that are always torn down, with the tails of
their logs shown when a test fails."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.pipeline import Pipeline


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def pipelines(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Pipeline]]:
    """`pipelines(hosts, **options)`: a Pipeline (not started yet), closed at teardown."""
    made: list[Pipeline] = []

    def make(hosts: list[dict[str, Any]], **options: Any) -> Pipeline:
        pipeline = Pipeline(tmp_path / f"pipeline-{len(made)}", hosts, **options)
        made.append(pipeline)
        return pipeline

    yield make
    for pipeline in made:
        if request.node.stash.get(_FAILED, False):
            print(pipeline.describe())
        pipeline.close()
