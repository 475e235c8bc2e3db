"""What is wrong with a config file: each problem with its file and location, all at once."""

from __future__ import annotations

from dataclasses import dataclass

from smtp_checks.shared.errors import ConfigError

__all__ = ["ConfigError", "ConfigProblem"]


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config file; `location` is a path like `hosts[3].checks.login`."""

    file: str
    location: str
    reason: str

    def __str__(self) -> str:
        if not self.location:
            return f"{self.file}: {self.reason}"
        return f"{self.file}: {self.location}: {self.reason}"
