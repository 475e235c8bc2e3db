"""`SMTP_CHECKS_<KEY>` environment variables override top-level keys of the file (structured
keys take JSON): how a deployment (or `smtp-checks run`) points every role elsewhere."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from smtp_checks.shared.config.problems import ConfigError, ConfigProblem

ENV_PREFIX = "SMTP_CHECKS_"


class _EnvOverrides(BaseSettings):
    """`SMTP_CHECKS_<KEY>` replaces a top-level key; structured keys take JSON."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="ignore")

    broker_url: str | None = None
    redis_url: str | None = None
    sentinel_master: str | None = None
    sentinel_password: str | None = None
    broker_queue_type: str | None = None
    visibility_timeout: int | None = None
    defaults: dict[str, Any] | None = None
    sites: dict[str, Any] | None = None
    target_limits: dict[str, Any] | None = None
    hosts: list[Any] | None = None
    centreon: dict[str, Any] | None = None


def environment_overrides(file: str) -> dict[str, Any]:
    try:
        overrides = _EnvOverrides()
    except SettingsError as error:
        raise ConfigError([ConfigProblem(file, "environment", str(error))]) from None
    except ValidationError as error:
        raise ConfigError(
            [
                ConfigProblem(file, f"environment {ENV_PREFIX}{str(e['loc'][0]).upper()}", e["msg"])
                for e in error.errors(include_input=False)
            ]
        ) from None
    return overrides.model_dump(exclude_unset=True)
