"""The pipeline in Centreon: with `centreon.self_check: {host: NAME}`, the consumer forwards
the pipeline's own health as passive services of that host, `Site-<site>` for each site
and `Pipeline` for the whole, with the states and texts of `smtp-checks status`
(shared/pipeline_health.py reads it, shared/pipeline_report.py words it).

Health is read every `SELF_CHECK_EVERY` seconds and recorded like any result
(consumer/service_states.py): a change goes to Centreon at once, an unchanged state at least
every `resend_interval`. So a site whose workers all died turns its service CRITICAL within
seconds, whether or not a check of it is due. A dead consumer sends nothing at all: Centreon's
freshness on these services catches that (deploy/centreon.md).
"""

from __future__ import annotations

import time

import redis

from smtp_checks.consumer.forwarders.base import PassiveResult
from smtp_checks.consumer.service_states import Observation
from smtp_checks.shared.config import Config
from smtp_checks.shared.identity import CheckIdentity
from smtp_checks.shared.pipeline_health import read_health
from smtp_checks.shared.pipeline_report import Report, pipeline_report, site_report
from smtp_checks.shared.probe.spec import Mode
from smtp_checks.shared.sanitize import sanitize

SELF_CHECK_EVERY = 10.0  # seconds between two readings of the pipeline's health
PIPELINE_SERVICE = "Pipeline"
# Seconds without a "real" result after which a service counts as starved: never, for these
# (the consumer that would say so is the one that produces them).
NEVER_STARVED = 10 * 365 * 86400.0
# Characters kept of the output and of each perfdata item: as much as a command file line
# holds; the forwarders cut what is too long, perfdata at whole items.
_TEXT_ROOM = 4096


def site_service(site: str) -> str:
    return f"Site-{site}"


class SelfCheck:
    """Observations of the pipeline's health, for the consumer to record and forward."""

    def __init__(
        self, config: Config, client: redis.Redis, broker: redis.Redis | None, *, host: str
    ) -> None:
        """`client`: the state Redis; `broker`: the broker's Redis, None on RabbitMQ."""
        self._config = config
        self._client = client
        self._broker = broker
        self.host = host
        # The first reading once this consumer and its peers have had time to beat: a
        # pipeline starting up is not a dead one.
        self._next = time.time() + SELF_CHECK_EVERY

    def services(self) -> list[tuple[str, str]]:
        """(host, service) of every service the self-check forwards."""
        names = [site_service(site) for site in self._config.sites] + [PIPELINE_SERVICE]
        return [(self.host, name) for name in names]

    def due(self, now: float) -> bool:
        return now >= self._next

    def observations(self, now: float) -> list[Observation]:
        """The pipeline's health at `now`, one observation per service."""
        self._next = now + SELF_CHECK_EVERY
        health = read_health(self._config, self._client, self._broker, now)
        reports = [(site.site, site_service(site.site), site_report(site)) for site in health.sites]
        reports.append(("", PIPELINE_SERVICE, pipeline_report(health)))
        return [self._observation(site, service, report, now) for site, service, report in reports]

    def _observation(self, site: str, service: str, report: Report, now: float) -> Observation:
        run_id = f"self-check:{now}"
        identity = CheckIdentity(
            check_id=f"{self.host}/{service}",
            host=self.host,
            service=service,
            site=site,
            mode=Mode.LOGIN,  # not a probe: a passive result's mode is never read
            run_id=run_id,
            scheduled_for=now,
            stale_at=now + SELF_CHECK_EVERY,
        )
        perfdata = " ".join(sanitize(item.render(), _TEXT_ROOM) for item in report.perfdata)
        passive = PassiveResult(
            identity, int(report.status), sanitize(report.output, _TEXT_ROOM), perfdata, now
        )
        return Observation(run_id, passive)
