"""The installed distribution's version, as `--version` and the heartbeats report it."""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version


@cache
def package_version() -> str:
    try:
        return version("smtp-checks")
    except PackageNotFoundError:
        return "unknown"
