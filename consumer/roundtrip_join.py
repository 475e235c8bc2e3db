"""Join a round trip's two steps into the one result Centreon gets for its service.

The send step ran on the host's site; when it failed, its result is the verdict (worded as
`message` mode words it). When it succeeded, nothing is forwarded yet: the round trip
begins (shared/roundtrips.py) and the receiving site's workers look into the mailbox, as
often as it takes, until the message is found or the receive timeout has passed. The
verdict is the send step's result with the delivery it had (`CheckResult.delivery`):
found (where, how fast), not delivered in time, or unknown when the mailbox could not be
read. A look that could not run for want of a per-target permit is tried again within the
timeout. A look of an earlier round trip of the check (another token) is ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from smtp_checks.consumer import metrics
from smtp_checks.shared.adhoc_replies import AdhocReplies
from smtp_checks.shared.config import ScheduledCheck
from smtp_checks.shared.mailbox.delivery import Delivery
from smtp_checks.shared.messages import CheckResult, Outcome
from smtp_checks.shared.messages.request import looks_for
from smtp_checks.shared.roundtrips import RoundTrip, RoundTrips

log = logging.getLogger("smtp_checks.consumer")


class RoundTripJoin:
    def __init__(
        self, trips: RoundTrips, replies: AdhocReplies, checks: Iterable[ScheduledCheck]
    ) -> None:
        round_trips = [check for check in checks if check.receive is not None]
        self._sends = {check.check_id: check for check in round_trips}
        self._looks = {check.receive_check_id: check for check in round_trips}
        self.trips = trips
        self._replies = replies
        self.ignored = 0  # looks of round trips no longer in progress
        self.superseded = 0  # round trips replaced by a newer run before their verdict

    @property
    def check_ids(self) -> set[str]:
        """The ids of the round trips and of their receive steps."""
        return {*self._sends, *self._looks}

    def step(self, result: CheckResult) -> CheckResult | None:
        """What to forward for `result`: itself (not a round trip, or a failed send), the
        joined verdict, or None (the round trip goes on)."""
        check = self._looks.get(result.check_id)
        if check is not None:
            return self._looked(check, result)
        if result.check_id in self._sends and result.outcome is Outcome.SUCCESS:
            replaced = self.trips.begin(result, result.ended_at)
            if replaced is not None:
                self.superseded += 1
                metrics.ROUNDTRIPS_SUPERSEDED.inc()
                log.info("round trip of %s (token %s) superseded by run %s before its verdict",
                         result.check_id, replaced.token, result.run_id)  # fmt: skip
            return None
        return result

    def ended(self, verdicts: Iterable[CheckResult]) -> None:
        """These verdicts are recorded (and forwarded): their round trips are over, and an
        ad hoc one's enqueuer gets its verdict."""
        for verdict in verdicts:
            if verdict.delivery is not None:
                self.trips.end(verdict.check_id, verdict.delivery.token)
            if verdict.adhoc:
                self._replies.reply(verdict)

    def orphaned(self, check_id: str, run_id: str) -> None:
        """Look `run_id` of this check was orphaned: its UNKNOWN is its round trip's verdict
        (when that round trip is still the check's)."""
        check = self._looks.get(check_id)
        trip = self.trips.get(check.check_id) if check is not None else None
        if check is not None and trip is not None and looks_for(run_id, trip.token):
            self.trips.end(check.check_id, trip.token)

    def overdue(self, now: float, grace: float) -> list[CheckResult]:
        """Verdicts for the round trips past their last possible look (no look was enqueued:
        the beat was down, or lost one): UNKNOWN."""
        verdicts = []
        for check_id, trip in self.trips.all().items():
            check = self._sends.get(check_id)
            if check is None or now < trip.over_by(check, grace):
                continue
            log.warning("round trip of %s (token %s) overdue: no look came back", check_id,
                        trip.token)  # fmt: skip
            lost = _no_verdict_yet(trip, check).unknown(
                "no look into the mailbox came back in time (is a beat leading, is the "
                "receiving site keeping up?)"
            )
            verdicts.append(_joined(trip, lost, ended_at=now))
        return verdicts

    def _looked(self, check: ScheduledCheck, result: CheckResult) -> CheckResult | None:
        receive = check.receive
        assert receive is not None
        trip = self.trips.get(check.check_id)
        mailbox = result.mailbox
        if trip is None or not looks_for(result.run_id, trip.token):
            self.ignored += 1
            metrics.ROUNDTRIP_LOOKS_IGNORED.inc()
            log.debug("ignored a look of %s: its round trip is over", check.check_id)
            return None
        verdict = _no_verdict_yet(trip, check)
        deadline = verdict.deadline
        if result.outcome is not Outcome.SUCCESS or mailbox is None:
            if result.outcome is Outcome.THROTTLED and result.ended_at < deadline:
                # No look was made: the last one's time still bounds the measure.
                self.trips.look_again(trip, result.ended_at, looked_at=None, not_after=deadline)
                return None
            failure = verdict.unknown(result.detail or result.outcome.value)
            return _joined(trip, failure, ended_at=result.ended_at)
        after = verdict.after_look(
            mailbox.found_in, mailbox.seen_at, ended_at=result.ended_at, junk=receive.junk,
            last_look_at=trip.last_look_at, received=mailbox.received,
        )  # fmt: skip
        if after is None:
            looked_at = result.started_at or result.ended_at
            self.trips.look_again(trip, looked_at, looked_at=looked_at, not_after=deadline)
            return None
        return _joined(trip, after, ended_at=mailbox.seen_at or result.ended_at)


def _no_verdict_yet(trip: RoundTrip, check: ScheduledCheck) -> Delivery:
    receive = check.receive
    assert receive is not None
    return Delivery(
        token=trip.token,
        sent_at=trip.sent_at,
        timeout=receive.timeout,
        warning=receive.warning,
        critical=receive.critical,
    )


def _joined(trip: RoundTrip, delivery: Delivery, *, ended_at: float) -> CheckResult:
    """The send step's result with the verdict on its delivery: the round trip's result,
    checked at the end of its last look."""
    return trip.send.model_copy(update={"delivery": delivery, "ended_at": ended_at})
