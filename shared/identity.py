"""The identity of one run of a check: which check (its id, Centreon host and service, site,
mode) and which run of it (its id, when it was scheduled, when it goes stale, ad hoc or not).

It is one type, carried whole by every record of a run: the CheckRequest a worker takes, the
CheckResult it publishes, the ledger's entry for it, the passive result forwarded to
Centreon. Nothing copies its fields one by one; `Identified` lets a record read them as its
own (`result.host`).
"""

from __future__ import annotations

from dataclasses import dataclass

from smtp_checks.shared.probe.spec import Mode


@dataclass(frozen=True)
class CheckIdentity:
    check_id: str  # "mx1/login": stable across runs
    host: str  # Centreon host name
    service: str  # Centreon service description
    site: str
    mode: Mode
    run_id: str  # unique per run: how a redelivery or a duplicate is recognised
    scheduled_for: float  # epoch seconds
    stale_at: float  # epoch seconds: the next run is due
    adhoc: bool = False


class Identified:
    """A record that carries a `CheckIdentity` and reads its fields as its own."""

    identity: CheckIdentity

    @property
    def check_id(self) -> str:
        return self.identity.check_id

    @property
    def host(self) -> str:
        return self.identity.host

    @property
    def service(self) -> str:
        return self.identity.service

    @property
    def site(self) -> str:
        return self.identity.site

    @property
    def mode(self) -> Mode:
        return self.identity.mode

    @property
    def run_id(self) -> str:
        return self.identity.run_id

    @property
    def scheduled_for(self) -> float:
        return self.identity.scheduled_for

    @property
    def stale_at(self) -> float:
        return self.identity.stale_at

    @property
    def adhoc(self) -> bool:
        return self.identity.adhoc
