"""`smtp-checks config check FILE`: validate a config; print a summary or every problem."""

from __future__ import annotations

import sys
from collections import defaultdict

from smtp_checks.shared.config import Config, load_config
from smtp_checks.shared.redis_urls import is_sentinel_url, parse_sentinel_url

USAGE = "usage: smtp-checks config check FILE\n"


def run_config(argv: list[str]) -> int:
    """Dispatch `smtp-checks config ...`; return the exit code (2 for usage or config errors)."""
    if argv and argv[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0
    if len(argv) != 2 or argv[0] != "check":
        sys.stderr.write(f"smtp-checks config: expected 'check FILE'\n{USAGE}")
        return 2
    path = argv[1]
    config = load_config(path)  # every problem, one per line (cli/main.py)
    sys.stdout.write(summary(path, config))
    return 0


def summary(path: str, config: Config) -> str:
    """A few lines for an operator: what will run where, and how often."""
    checks = config.scheduled_checks()
    per_site: dict[str, list[float]] = defaultdict(list)
    mailboxes: dict[str, int] = defaultdict(int)  # the round trips whose looks a site makes
    for check in checks:
        per_site[check.site].append(check.per_minute)
        if check.receive is not None:
            mailboxes[check.receive.site] += 1
    lines = [
        f"{path}: OK",
        ", ".join(
            _count(len(items), noun)
            for items, noun in ((config.hosts, "host"), (checks, "check"), (config.sites, "site"))
        ),
    ]
    for name, site in config.sites.items():
        rates = per_site.get(name, [])
        limit = f"rate limit {site.rate_limit} per worker" if site.rate_limit else "no rate limit"
        looks = f", the mailbox looks of {_count(mailboxes[name], 'round trip')}"
        lines.append(
            f"site {name}: {_count(len(rates), 'check')}, {sum(rates):.1f} checks/min, {limit}"
            + (looks if mailboxes[name] else "")
        )
    lines += _high_availability(config)
    forwarders = ", ".join(forwarder.type for forwarder in config.centreon.forwarders)
    lines.append(f"forwarding to Centreon: {forwarders or 'none configured'}")
    return "".join(f"{line}\n" for line in lines)


def _high_availability(config: Config) -> list[str]:
    """What the HA settings amount to, when there are any."""
    lines = []
    behind = [key for key in ("broker_url", "redis_url")
              if is_sentinel_url(getattr(config, key) or "")]  # fmt: skip
    if behind:
        sentinels = {node for key in behind
                     for node in parse_sentinel_url(getattr(config, key)).sentinels}  # fmt: skip
        lines.append(
            f"Redis behind Sentinel ({', '.join(behind)}): master {config.sentinel_master}, "
            f"{_count(len(sentinels), 'sentinel')}"
        )
    if config.broker_queue_type == "quorum":
        lines.append("check queues: RabbitMQ quorum queues")
    return lines


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
