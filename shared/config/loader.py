"""Read a config file: YAML that refuses duplicate keys, the environment's overrides, then
validation, with every problem reported at once at its location (`hosts[3].checks.login`)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from smtp_checks.shared.config.environment import environment_overrides
from smtp_checks.shared.config.models import (
    FORWARDER_TYPES,
    Config,
    Defaults,
    Host,
    Site,
    Sites,
)
from smtp_checks.shared.config.problems import ConfigError, ConfigProblem
from smtp_checks.shared.config.rules import HostFacts, cross_field_problems, host_facts
from smtp_checks.shared.redis_urls import is_redis_url, is_sentinel_url, parse_sentinel_url


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key written twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}'", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | Path) -> Config:
    """Read, override from the environment and validate; raise ConfigError with every problem."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError([ConfigProblem(file, "", f"cannot read: {error.strerror}")]) from None
    except UnicodeDecodeError:
        raise ConfigError([ConfigProblem(file, "", "not UTF-8 text")]) from None
    data = _parse_yaml(file, text)
    data.update(environment_overrides(file))
    return parse_config(data, file)


def _parse_yaml(file: str, text: str) -> dict[str, Any]:
    loader = _UniqueKeyLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = " ".join(part for part in (error.context, error.problem) if part)
        raise ConfigError([ConfigProblem(file, where, f"YAML: {reason}")]) from None
    except yaml.YAMLError as error:
        raise ConfigError([ConfigProblem(file, "", f"YAML: {error}")]) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem(file, "", "must be a YAML mapping of settings")])
    return data


def parse_config(data: Mapping[str, Any], file: str = "<config>") -> Config:
    """Validate already-read settings; raise ConfigError with every problem found."""
    try:
        config = Config.model_validate(data, context={"skip_cross_field": True})
    except ValidationError as error:
        found = error.errors(include_input=False)
        problems = [_problem(file, details) for details in found if not _echo(details, found)]
        defaults, sites, hosts = _valid_parts(data)
    else:
        problems = [ConfigProblem(file, where, why) for where, why in _delivery_problems(config)]
        defaults, sites, hosts = config.defaults, config.sites, host_facts(config.hosts)
    problems += [
        ConfigProblem(file, where, why)
        for where, why in cross_field_problems(defaults, sites, hosts)
    ]
    problems += [ConfigProblem(file, where, why) for where, why in _broker_problems(data)]
    if problems:
        raise ConfigError(problems)
    return config


def _echo(details: ErrorDetails, found: list[ErrorDetails]) -> bool:
    """A list "too short" only because its items were refused (`to: [probe]`): the items'
    errors say it, this one would only add noise."""
    loc = details["loc"]
    return details["type"] == "too_short" and any(
        len(other["loc"]) > len(loc) and other["loc"][: len(loc)] == loc for other in found
    )


def _delivery_problems(config: Config) -> list[tuple[str, str]]:
    """A check still running when its message's visibility timeout ends is delivered to
    another worker and run twice: the timeout must leave room for the longest check."""
    longest = max((check.timeout for check in config.scheduled_checks()), default=0.0)
    if config.visibility_timeout < 2 * longest:
        return [
            (
                "visibility_timeout",
                f"{config.visibility_timeout}s is less than twice the longest check timeout "
                f"({longest:g}s): a check still running would be delivered again",
            )
        ]
    return []


def _broker_problems(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    broker, redis_url = data.get("broker_url"), data.get("redis_url")
    problems = []
    if isinstance(broker, str) and not is_redis_url(broker) and not redis_url:
        problems.append(
            (
                "redis_url",
                "required when the broker is not Redis (per-target limits and state live in Redis)",
            )
        )
    if data.get("broker_queue_type") == "quorum" and (
        not isinstance(broker, str) or is_redis_url(broker)
    ):
        problems.append(("broker_queue_type", "quorum queues are RabbitMQ's: not for Redis"))
    return problems + _sentinel_problems(data)


def _sentinel_problems(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A half-configured Sentinel: URLs without the master's name, or settings for URLs
    that are not Sentinel's."""
    problems = []
    behind = []
    for key in ("broker_url", "redis_url"):
        url = data.get(key)
        if isinstance(url, str) and is_sentinel_url(url):
            behind.append(key)
            try:
                parse_sentinel_url(url)
            except ValueError as error:
                problems.append((key, str(error)))
    if behind and data.get("sentinel_master") is None:
        problems.append(
            (
                "sentinel_master",
                f"required: {' and '.join(behind)} {'are' if len(behind) > 1 else 'is a'} "
                "Sentinel URL: name the master the sentinels monitor (their `sentinel "
                "monitor NAME ...`)",
            )
        )
    if not behind:
        for key in ("sentinel_master", "sentinel_password"):
            if data.get(key) is not None:
                problems.append(
                    (
                        key,
                        "set, but neither broker_url nor redis_url is a Sentinel URL "
                        "(sentinel://host1:26379;sentinel://host2:26379/0): it would be ignored",
                    )
                )
    return problems


def _valid_parts(
    data: Mapping[str, Any],
) -> tuple[Defaults | None, Mapping[str, Site] | None, list[HostFacts]]:
    # Some part is invalid: still check the rules across fields on the parts that are valid,
    # so that one run reports everything.
    defaults: Defaults | None = None
    sites: Mapping[str, Site] | None = None
    hosts: list[HostFacts] = []
    with suppress(ValidationError):
        defaults = Defaults.model_validate(data.get("defaults", {}))
    with suppress(ValidationError):
        sites = TypeAdapter(Sites).validate_python(data.get("sites"))
    raw_hosts = data.get("hosts")
    for index, raw in enumerate(raw_hosts if isinstance(raw_hosts, list) else []):
        try:
            host = Host.model_validate(raw)
        except ValidationError:
            # Still check its name and site, when they are at least text.
            fields = raw if isinstance(raw, dict) else {}
            name, site = fields.get("name"), fields.get("site")
            hosts.append(
                HostFacts(
                    index,
                    name if isinstance(name, str) else None,
                    site if isinstance(site, str) else None,
                    None,
                )
            )
        else:
            hosts.append(HostFacts(index, host.name, host.site, host))
    return defaults, sites, hosts


def _problem(file: str, details: ErrorDetails) -> ConfigProblem:
    kind, loc = details["type"], list(details["loc"])
    ctx = details.get("ctx", {})
    if kind == "extra_forbidden":
        reason = "unknown key"
    elif kind == "missing":
        reason = "required"
    elif kind == "union_tag_not_found":
        loc.append("type")
        reason = f"required: one of {', '.join(FORWARDER_TYPES)}"
    elif kind == "union_tag_invalid":
        loc.append("type")
        reason = f"unknown type '{ctx.get('tag')}' (expected {', '.join(FORWARDER_TYPES)})"
    else:
        reason = details["msg"].removeprefix("Value error, ")
    return ConfigProblem(file, _location(loc), reason)


def _location(loc: list[int | str]) -> str:
    """pydantic's ('hosts', 3, 'checks', 'message', 'to') as `hosts[3].checks.message.to`."""
    text = ""
    for position, item in enumerate(loc):
        if isinstance(item, int):
            text += f"[{item}]"
        elif item == "[key]":
            continue
        elif position >= 2 and loc[position - 2] == "forwarders" and item in FORWARDER_TYPES:
            continue  # the discriminated union's tag, not a key of the file
        else:
            text += f".{item}" if text else item
    return text
