"""The rules no single field can check: a host configured twice, an unknown site, two checks
of a host on one service, an interval shorter than the timeout, address families that
disagree (`ip`, `source_address`, an address host). Each problem at its place."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

from smtp_checks.shared.config.checks import DEFAULT_SERVICES, resolve
from smtp_checks.shared.probe import validation

if TYPE_CHECKING:
    from collections.abc import Mapping

    from smtp_checks.shared.config.checks import ScheduledCheck
    from smtp_checks.shared.config.models import Defaults, Host, Site


class HostFacts(NamedTuple):
    """What the rules across fields know of one host; None where that part is invalid."""

    position: int
    name: str | None
    site: str | None
    host: Host | None


def host_facts(hosts: list[Host]) -> list[HostFacts]:
    return [HostFacts(index, host.name, host.site, host) for index, host in enumerate(hosts)]


def cross_field_problems(
    defaults: Defaults | None, sites: Mapping[str, Site] | None, hosts: list[HostFacts]
) -> list[tuple[str, str]]:
    """Rules no single field can check. A None part was invalid itself: its rules are skipped."""
    problems: list[tuple[str, str]] = []
    first_index: dict[str, int] = {}
    for index, name, site, host in hosts:
        where = f"hosts[{index}]"
        if name is not None and name in first_index:
            problems.append(
                (
                    f"{where}.name",
                    f"duplicate host '{name}' (also hosts[{first_index[name]}]): "
                    "each (host, check) must be configured once",
                )
            )
        if name is not None:
            first_index.setdefault(name, index)
        if sites is not None and site is not None and site not in sites:
            known = ", ".join(sorted(sites)) or "none"
            problems.append((f"{where}.site", f"unknown site '{site}' (sites: {known})"))
        if host is None:
            continue
        services: dict[str, str] = {}
        for mode, check in host.checks.items():
            check_where = f"{where}.checks.{mode.value}"
            service = check.service or DEFAULT_SERVICES[mode]
            if service in services:
                problems.append(
                    (
                        f"{check_where}.service",
                        f"service '{service}' is also the {services[service]}",
                    )
                )
            services.setdefault(service, f"{mode.value} check's")
            if defaults is not None:
                host_site = sites.get(host.site) if sites is not None else None
                resolved = resolve(defaults, host, mode, check, site=host_site)
                try:
                    validation.families(host.address, resolved.ip, resolved.source_address)
                except ValueError as error:
                    problems.append((check_where, str(error)))
                problems += _receive_problems(check_where, resolved, sites)
                if resolved.interval < resolved.timeout:
                    problems.append(
                        (
                            check_where,
                            f"interval {resolved.interval}s is shorter than the timeout "
                            f"{resolved.timeout:g}s (a run could still be going at the next one)",
                        )
                    )
    return problems


def _receive_problems(
    where: str, check: ScheduledCheck, sites: Mapping[str, Site] | None
) -> list[tuple[str, str]]:
    """A round trip's receive side: a known site, and done before the next run sends (one
    round trip of a check at a time: the next run deletes what the last one left)."""
    receive = check.receive
    if receive is None:
        return []
    problems = []
    if sites is not None and receive.site not in sites:
        known = ", ".join(sorted(sites)) or "none"
        problems.append(
            (f"{where}.receive.site", f"unknown site '{receive.site}' (sites: {known})")
        )
    if receive.timeout + check.timeout >= check.interval:
        least = math.floor(receive.timeout + check.timeout) + 1
        problems.append(
            (
                f"{where}.receive.timeout",
                f"{receive.timeout:g}s plus the timeout {check.timeout:g}s must be shorter than "
                f"the interval {check.interval}s (a round trip must end before the next "
                f"begins): set an interval of at least {least}s or a shorter receive timeout",
            )
        )
    return problems
