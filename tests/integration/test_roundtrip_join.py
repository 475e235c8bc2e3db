"""The consumer's side of a round trip against a real Redis: a successful send begins it and
asks for a look at once, each look that finds nothing asks for the next a little later, and
one verdict ends it: found (how fast, to within what), not delivered in time, unknown; a
look of an earlier round trip is ignored, a throttled one is tried again, one that never
comes back ends the round trip UNKNOWN; the beat sees it in progress until then."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from smtp_checks.consumer.roundtrip_join import RoundTripJoin
from smtp_checks.shared.adhoc_replies import AdhocReplies
from smtp_checks.shared.config import ScheduledCheck, load_config
from smtp_checks.shared.keys import Keys
from smtp_checks.shared.mailbox.spec import MailboxFailure, MailboxLook
from smtp_checks.shared.messages import CheckRequest, CheckResult, Handling, Outcome
from smtp_checks.shared.probe.failures import FailureKind, ProbeFailure
from smtp_checks.shared.probe.phases import Phase
from smtp_checks.shared.probe.result import ProbeResult
from smtp_checks.shared.roundtrips import RoundTrips
from tests.redis_fixtures import flushed_redis_db

pytestmark = pytest.mark.integration

KEYS = Keys(prefix="test-roundtrips:")
GRACE = 30.0
CONFIG = """\
sites: {paris: {}, lyon: {}}
hosts:
  - name: mx1
    address: 192.0.2.10
    site: paris
    interval: 300
    checks:
      roundtrip:
        from: monitor@example.com
        to: probe@example.com
        receive: {protocol: imap, address: imap.example.com, username: probe,
                  password: "env:PW", site: lyon, timeout: 60, warning: 10, junk: [Junk]}
"""


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    for url in flushed_redis_db(6):
        yield redis.Redis.from_url(url)


@pytest.fixture
def check(tmp_path: Path) -> ScheduledCheck:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    (found,) = load_config(path).scheduled_checks()
    return found


@pytest.fixture
def join(client: redis.Redis, check: ScheduledCheck) -> RoundTripJoin:
    return RoundTripJoin(RoundTrips(client, keys=KEYS), AdhocReplies(client, keys=KEYS), [check])


def handling(at: float) -> Handling:
    return Handling(worker="w@test", received_at=at, queue_wait=0.0)


def sent(
    check: ScheduledCheck, at: float, *, adhoc: bool = False, failure: ProbeFailure | None = None
) -> CheckResult:
    request = CheckRequest.from_scheduled(check, scheduled_for=at, stale_at=at + 300, adhoc=adhoc)
    probe = ProbeResult(time=0.2, sent_after=0.15, failure=failure)
    return CheckResult.from_probe(request, handling(at), probe, at)


def looked(
    check: ScheduledCheck, token: str, at: float, *, found_in: str | None = None,
    failure: MailboxFailure | None = None,
) -> CheckResult:  # fmt: skip
    request = CheckRequest.receive_step(check, token, scheduled_for=at)
    look = MailboxLook(
        time=0.05, found_in=found_in, seen_at=at + 0.05 if found_in else None, failure=failure
    )
    return CheckResult.from_look(request, handling(at), look, at)


def test_a_failed_send_is_the_verdict_and_begins_nothing(
    join: RoundTripJoin, check: ScheduledCheck
) -> None:
    refused = ProbeFailure.make(
        FailureKind.REJECTED, Phase.RCPT, "RCPT TO <probe@example.com> refused: 550"
    )
    result = sent(check, 1000.0, failure=refused)
    assert join.step(result) is result
    assert join.trips.get(check.check_id) is None


def test_looks_until_found_then_one_verdict_with_its_bound(
    join: RoundTripJoin, check: ScheduledCheck
) -> None:
    send = sent(check, 1000.0)
    assert join.step(send) is None
    token = send.run_id
    assert join.trips.take_due(1000.5) == []
    assert join.trips.take_due(1001.3) == [(check.check_id, token)]
    assert join.trips.take_due(1001.3) == []  # taken once
    # Nothing at 1001.3: the next look 2 s later, then 4 s later.
    assert join.step(looked(check, token, 1001.3)) is None
    assert join.trips.take_due(1003.2) == []
    assert join.trips.take_due(1003.3) == [(check.check_id, token)]
    assert join.step(looked(check, token, 1003.3)) is None
    assert join.trips.take_due(1007.3) == [(check.check_id, token)]
    verdict = join.step(looked(check, token, 1007.3, found_in="INBOX"))
    assert verdict is not None and verdict.delivery is not None
    delivery = verdict.delivery
    assert delivery.folder == "INBOX" and not delivery.junk
    assert delivery.seconds == pytest.approx(1007.35 - 1000.15)
    assert delivery.bound == pytest.approx(1007.35 - 1003.3)  # since the look before
    assert verdict.run_id == token and verdict.ended_at == pytest.approx(1007.35)
    join.ended([verdict])
    assert join.trips.get(check.check_id) is None
    assert join.trips.take_due(2000.0) == []


def test_found_in_junk_says_so(join: RoundTripJoin, check: ScheduledCheck) -> None:
    send = sent(check, 1000.0)
    join.step(send)
    verdict = join.step(looked(check, send.run_id, 1001.2, found_in="Junk"))
    assert verdict is not None and verdict.delivery is not None and verdict.delivery.junk


def test_not_found_by_the_receive_timeout_is_not_delivered(
    join: RoundTripJoin, check: ScheduledCheck
) -> None:
    send = sent(check, 1000.0)
    join.step(send)
    assert join.step(looked(check, send.run_id, 1050.0)) is None
    # The last look is due at the end of the timeout, never later.
    assert join.trips.take_due(1060.15) == [(check.check_id, send.run_id)]
    verdict = join.step(looked(check, send.run_id, 1060.15))
    assert verdict is not None and verdict.delivery is not None
    assert verdict.delivery.folder is None and verdict.delivery.failure is None
    assert verdict.delivery.timeout == 60


def test_a_failed_look_is_unknown_and_a_throttled_one_is_tried_again(
    join: RoundTripJoin, check: ScheduledCheck
) -> None:
    now = time.time()  # a result not run ends now
    send = sent(check, now)
    join.step(send)
    request = CheckRequest.receive_step(check, send.run_id, scheduled_for=now + 1)
    throttled = CheckResult.not_run(request, handling(now + 1), Outcome.THROTTLED, "no permit")
    assert join.step(throttled) is None
    assert join.trips.get(check.check_id) is not None
    failure = MailboxFailure.make(FailureKind.AUTH, "LOGIN refused: NO [AUTHENTICATIONFAILED]")
    verdict = join.step(looked(check, send.run_id, now + 3, failure=failure))
    assert verdict is not None and verdict.delivery is not None
    assert verdict.delivery.failure == "LOGIN refused: NO [AUTHENTICATIONFAILED]"


def test_a_look_of_an_earlier_round_trip_is_ignored(
    join: RoundTripJoin, check: ScheduledCheck
) -> None:
    first, second = sent(check, 1000.0), sent(check, 1300.0)
    join.step(first)
    join.step(second)  # the first one's trip is over (the beat would have skipped it)
    assert join.step(looked(check, first.run_id, 1301.0, found_in="INBOX")) is None
    trip = join.trips.get(check.check_id)
    assert trip is not None and trip.token == second.run_id
    assert join.ignored == 1


def test_the_beat_sees_a_round_trip_in_progress_until_its_last_look_is_overdue(
    join: RoundTripJoin, check: ScheduledCheck
) -> None:
    now = time.time()
    join.step(sent(check, now))
    assert join.trips.in_progress([check], now + 10, GRACE) == {check.check_id}
    # 60 s receive timeout, 30 s timeout, twice the grace.
    over = now + 0.15 + 60 + 30 + 2 * GRACE
    assert join.trips.in_progress([check], over - 1, GRACE) == {check.check_id}
    assert join.trips.in_progress([check], over + 1, GRACE) == set()
    assert join.overdue(over - 1, GRACE) == []
    (lost,) = join.overdue(over + 1, GRACE)
    assert lost.delivery is not None
    assert lost.delivery.failure == (
        "no look into the mailbox came back in time (is a beat leading, is the receiving "
        "site keeping up?)"
    )


def test_an_ad_hoc_round_trip_replies_with_its_verdict(
    join: RoundTripJoin, check: ScheduledCheck, client: redis.Redis
) -> None:
    send = sent(check, time.time(), adhoc=True)
    assert send.awaits_delivery  # the worker does not reply with the send step
    join.step(send)
    verdict = join.step(looked(check, send.run_id, send.ended_at + 1, found_in="INBOX"))
    assert verdict is not None
    join.ended([verdict])
    reply = AdhocReplies(client, keys=KEYS).wait(send.run_id, 1)
    assert reply is not None and reply.delivery == verdict.delivery


def test_a_round_trip_survives_a_consumer_restart(
    client: redis.Redis, check: ScheduledCheck
) -> None:
    first = RoundTripJoin(RoundTrips(client, keys=KEYS), AdhocReplies(client, keys=KEYS), [check])
    send = sent(check, 1000.0)
    first.step(send)
    again = RoundTripJoin(RoundTrips(client, keys=KEYS), AdhocReplies(client, keys=KEYS), [check])
    verdict = again.step(looked(check, send.run_id, 1001.2, found_in="INBOX"))
    assert verdict is not None and verdict.delivery is not None
    assert verdict.delivery.folder == "INBOX"


def test_an_orphaned_look_ends_only_its_own_round_trip(
    join: RoundTripJoin, check: ScheduledCheck
) -> None:
    first, second = sent(check, 1000.0), sent(check, 1300.0)
    join.step(first)
    old_look = CheckRequest.receive_step(check, first.run_id, scheduled_for=1001.0)
    join.step(second)
    join.orphaned(check.receive_check_id, old_look.run_id)  # the first's look, reported late
    trip = join.trips.get(check.check_id)
    assert trip is not None and trip.token == second.run_id
    assert join.superseded == 1  # the first had no verdict when the second began
    new_look = CheckRequest.receive_step(check, second.run_id, scheduled_for=1301.0)
    join.orphaned(check.receive_check_id, new_look.run_id)
    assert join.trips.get(check.check_id) is None
