"""The YAML configuration: value types, models, the defaults cascade, environment
overrides, and the loader that reports every problem with its location."""

from smtp_checks.shared.config.checks import (
    DEFAULT_SERVICES,
    ScheduledCheck,
    asked_per_minute,
    sending_check_id,
)
from smtp_checks.shared.config.environment import ENV_PREFIX
from smtp_checks.shared.config.loader import load_config, parse_config
from smtp_checks.shared.config.models import (
    ApiV1Forwarder,
    ApiV2Forwarder,
    Centreon,
    Checks,
    CheckSettings,
    CommandFileForwarder,
    Config,
    Defaults,
    Host,
    LoginCheck,
    MessageCheck,
    Site,
    TargetLimits,
)
from smtp_checks.shared.config.problems import ConfigError, ConfigProblem
from smtp_checks.shared.config.values import EngineReader, SecretRef, rate_per_minute

__all__ = [
    "DEFAULT_SERVICES",
    "ENV_PREFIX",
    "ApiV1Forwarder",
    "ApiV2Forwarder",
    "Centreon",
    "CheckSettings",
    "Checks",
    "CommandFileForwarder",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "Defaults",
    "EngineReader",
    "Host",
    "LoginCheck",
    "MessageCheck",
    "ScheduledCheck",
    "SecretRef",
    "Site",
    "TargetLimits",
    "asked_per_minute",
    "load_config",
    "parse_config",
    "rate_per_minute",
    "sending_check_id",
]
