"""The ledger's scripts on a real Redis (database 8): one pending run per check, superseded
runs, lost runs, orphans only for runs that produced nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio

from smtp_checks.shared.config import ScheduledCheck
from smtp_checks.shared.heartbeats import Heartbeat, send_heartbeat
from smtp_checks.shared.keys import KEYS
from smtp_checks.shared.ledger import (
    HELD_AT_MOST,
    LOST_AFTER,
    PENDING_INTERVALS,
    UNSEEN_PENDING_INTERVALS,
    Ledger,
    NewRun,
    Verdict,
    WorkerLedger,
)
from smtp_checks.shared.messages import CheckRequest
from smtp_checks.shared.probe.spec import Mode, TlsMode
from tests.redis_fixtures import flushed_redis_db

LEDGER_DB = 8


@pytest.fixture
def url() -> Iterator[str]:
    yield from flushed_redis_db(LEDGER_DB)


@pytest.fixture
def client(url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(url)
    yield connection
    connection.close()


def check(host: str = "mx1", site: str = "paris") -> ScheduledCheck:
    return ScheduledCheck(
        check_id=f"{host}/login", host=host, service="SMTP-Login", mode=Mode.LOGIN, site=site,
        address="127.0.0.1", port=25, tls=TlsMode.NONE, verify_tls=True, ca_file=None,
        timeout=5.0, interval=60, warning=None, critical=None, username=None, password=None,
        message=None,
    )  # fmt: skip


def run(slot: int, *, host: str = "mx1", site: str = "paris", adhoc: bool = False) -> NewRun:
    """Slot `slot` of a check (scheduled 60 s apart, an hour ago onwards)."""
    at = time.time() - 3600 + 60 * slot
    request = CheckRequest.from_scheduled(
        check(host, site), scheduled_for=at, stale_at=at + 60, adhoc=adhoc
    )
    if adhoc:
        return NewRun(request)
    return NewRun(request, KEYS.slot(request.check_id, slot), 120)


def take(url: str, *runs: NewRun, worker: str = "w1") -> list[bool]:
    async def taking() -> list[bool]:
        client = redis.asyncio.Redis.from_url(url)
        try:
            return await WorkerLedger(client).take([r.request for r in runs], worker=worker)
        finally:
            await client.aclose()

    return asyncio.run(taking())


def publish(url: str, *runs: NewRun) -> None:
    """Settle runs as a worker does when it publishes their results."""

    async def publishing() -> None:
        client = redis.asyncio.Redis.from_url(url)
        try:
            async with client.pipeline(transaction=True) as pipe:
                WorkerLedger(client).settle_in(pipe, [r.request.run_id for r in runs])
                await pipe.execute()
        finally:
            await client.aclose()

    asyncio.run(publishing())


def test_a_check_has_one_pending_run_and_its_skipped_slots_are_counted(
    client: redis.Redis, url: str
) -> None:
    ledger = Ledger(client)
    first, second, third = run(1), run(2), run(3)
    other = run(1, host="mx2")
    assert ledger.enqueue([first, other]) == [Verdict.ENQUEUED, Verdict.ENQUEUED]
    # mx1's run is still queued: its next slots are skipped, not queued behind it.
    assert ledger.enqueue([second]) == [Verdict.PENDING]
    assert ledger.enqueue([second]) == [Verdict.PENDING]
    assert ledger.pending_count() == 2 and ledger.count() == 2
    assert client.hget(KEYS.counters, "skipped_slots") == b"2"
    # Taken, however late: the check may be enqueued again.
    assert take(url, first) == [True]
    assert ledger.enqueue([third]) == [Verdict.ENQUEUED]
    # A slot claimed already (another beat) is not enqueued twice.
    publish(url, third)
    assert ledger.enqueue([third]) == [Verdict.CLAIMED]


def test_an_ad_hoc_run_is_always_enqueued_and_supersedes_the_queued_run(
    client: redis.Redis, url: str
) -> None:
    ledger = Ledger(client)
    scheduled, adhoc = run(1), run(2, adhoc=True)
    assert ledger.enqueue([scheduled]) == [Verdict.ENQUEUED]
    assert ledger.enqueue([adhoc]) == [Verdict.ENQUEUED]
    # The older run is no longer awaited (it can never be an orphan) and, when a worker
    # takes it, is dropped unrun; the ad hoc run runs.
    assert [r.run_id for r in ledger.outstanding()] == [adhoc.request.run_id]
    assert take(url, scheduled, adhoc) == [False, True]
    assert ledger.pending_count() == 0
    # An ad hoc run is never superseded itself: asking twice runs twice.
    again = run(3, adhoc=True)
    ledger.enqueue([again])
    assert take(url, adhoc) == [True]


def test_a_run_queued_before_its_queue_was_seen_empty_is_lost_and_replaced(
    client: redis.Redis, url: str
) -> None:
    ledger = Ledger(client)
    first = run(1)
    ledger.enqueue([first])
    enqueued_at = time.time()
    # A worker found the queue empty before this run was enqueued: it may still be queued.
    assert ledger.enqueue([run(2)], queue_empty_at={"paris": enqueued_at - 5}) == [Verdict.PENDING]
    # Or just after it was recorded, which may be before the beat published it.
    just_after = {"paris": enqueued_at + LOST_AFTER - 1}
    assert ledger.enqueue([run(2)], queue_empty_at=just_after) == [Verdict.PENDING]
    # Found empty well after: the run is gone (a broker that lost its data). The next slot
    # goes out, and the lost run, should it ever show up, is superseded.
    replacement = run(3)
    well_after = {"paris": enqueued_at + LOST_AFTER + 1}
    assert ledger.enqueue([replacement], queue_empty_at=well_after) == [Verdict.ENQUEUED]
    assert [r.run_id for r in ledger.outstanding()] == [replacement.request.run_id]
    assert take(url, first, replacement) == [False, True]


def test_the_sweep_orphans_unanswered_runs_and_defers_those_queued_on_a_live_site(
    client: redis.Redis, url: str
) -> None:
    ledger = Ledger(client, grace=30)
    queued_live = run(1, host="mx1", site="paris")
    queued_dead = run(1, host="mx2", site="lyon")
    taken = run(1, host="mx3", site="paris")
    answered = run(1, host="mx4", site="paris")
    ledger.enqueue([queued_live, queued_dead, taken, answered])
    take(url, taken, answered, worker="w7@poller")
    publish(url, answered)
    # Long after every due time; paris has live workers, lyon none.
    orphans = ledger.sweep(time.time() + 3600, {"paris"})
    by_host = {orphan.run.host: orphan for orphan in orphans}
    assert set(by_host) == {"mx2", "mx3"}
    assert by_host["mx2"].taken_by is None
    assert by_host["mx3"].taken_by == "w7@poller" and by_host["mx3"].taken_at is not None
    # Late, not lost: the run queued on a live site is still awaited, and pending.
    assert [r.host for r in ledger.outstanding()] == ["mx1"]
    assert client.hexists(KEYS.outstanding_pending, "mx1/login")
    # The orphaned queued run is no longer pending: the check's next slot goes out.
    assert not client.hexists(KEYS.outstanding_pending, "mx2/login")
    # A second sweep (or consumer) finds nothing more.
    assert ledger.sweep(time.time() + 3600, {"paris"}) == []
    assert ledger.enqueue([run(2, host="mx2", site="lyon")]) == [Verdict.ENQUEUED]


def test_a_taken_run_is_due_back_within_its_timeout_and_the_grace(
    client: redis.Redis, url: str
) -> None:
    ledger = Ledger(client, grace=30)
    taken = run(60)  # scheduled now: its stale time is a minute away
    ledger.enqueue([taken])
    before = time.time()
    take(url, taken)
    due = client.zscore(KEYS.outstanding, taken.request.run_id)
    assert due is not None and before + 5 + 30 <= due <= time.time() + 5 + 30


def test_a_run_never_published_or_pending_too_long_is_lost_and_replaced(
    client: redis.Redis, url: str
) -> None:
    ledger = Ledger(client)
    unpublished = run(1)
    ledger.enqueue([unpublished])
    ledger.unpublished([unpublished.request])  # the broker refused it
    assert ledger.enqueue([run(2)]) == [Verdict.ENQUEUED]
    assert take(url, unpublished) == [False]  # should it ever come: superseded
    # Pending for long: presumed lost after UNSEEN_PENDING_INTERVALS intervals where nobody
    # can see the queue empty (RabbitMQ), after PENDING_INTERVALS where workers can.
    waiting = run(1, host="mx2")
    ledger.enqueue([waiting])

    def pending_since(intervals: float) -> None:
        since = time.time() - intervals * 60 - 1
        client.hset(KEYS.outstanding_pending, "mx2/login", f"{waiting.request.run_id} {since}")

    seen = {"paris": time.time() - 3600}  # seen empty, long before the run was enqueued
    pending_since(UNSEEN_PENDING_INTERVALS)
    assert ledger.enqueue([run(2, host="mx2")], queue_empty_at=seen) == [Verdict.PENDING]
    pending_since(PENDING_INTERVALS)
    waiting = run(3, host="mx2")  # the run pending from now on
    assert ledger.enqueue([waiting], queue_empty_at=seen) == [Verdict.ENQUEUED]
    pending_since(UNSEEN_PENDING_INTERVALS)
    assert ledger.enqueue([run(4, host="mx2")]) == [Verdict.ENQUEUED]


def test_a_run_given_back_is_queued_again_not_the_orphan_of_its_worker(
    client: redis.Redis, url: str
) -> None:
    ledger = Ledger(client)
    given_back, following = run(1), run(2)
    ledger.enqueue([given_back])
    take(url, given_back, worker="w1")

    async def untaking() -> None:
        async_client = redis.asyncio.Redis.from_url(url)
        ledger = WorkerLedger(async_client)
        await ledger.untake([given_back.request.run_id], worker="w2")  # not its hold: kept
        assert await async_client.hexists(KEYS.outstanding_taken, given_back.request.run_id)
        await ledger.untake([given_back.request.run_id], worker="w1")
        await async_client.aclose()

    asyncio.run(untaking())
    ledger.enqueue([following])
    # Redelivered after the next slot went out: superseded, and settled (nobody died).
    assert take(url, given_back, worker="w2") == [False]
    assert ledger.sweep(time.time() + 3600, {"paris"}) == []
    assert [r.run_id for r in ledger.outstanding()] == [following.request.run_id]


def test_a_run_held_by_a_live_worker_is_awaited_a_while_before_it_is_an_orphan(
    client: redis.Redis, url: str
) -> None:
    ledger = Ledger(client, grace=30)
    held = run(60)
    ledger.enqueue([held])
    take(url, held, worker="w1@poller")
    now = time.time()
    # The worker beats on (it cannot publish: Redis out of its reach, say) well past the
    # run's due time, in the life that took the run.
    later = now + HELD_AT_MOST + 60
    send_heartbeat(client, Heartbeat("worker", "w1@poller", later, now - 60, site="paris"))
    assert ledger.sweep(now + 120, {"paris"}) == []
    (orphan,) = ledger.sweep(later, {"paris"})  # held too long: reported all the same
    assert orphan.taken_by == "w1@poller"


def test_what_the_ledger_keeps_of_checks_no_longer_configured_is_dropped(
    client: redis.Redis, url: str
) -> None:
    ledger = Ledger(client)
    kept, removed = run(1, host="mx1"), run(1, host="mx2")
    ledger.enqueue([kept, removed])
    take(url, removed, worker="w1")
    assert ledger.forget_checks_except({"mx1/login"}) == 1
    assert [r.run_id for r in ledger.outstanding()] == [kept.request.run_id]
    for key in (KEYS.outstanding_pending, KEYS.outstanding_latest):
        assert client.hkeys(key) == [b"mx1/login"]
    assert client.hlen(KEYS.outstanding_taken) == 0
    assert ledger.count() == 1
