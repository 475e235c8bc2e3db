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
from smtp_checks.shared.keys import KEYS
from smtp_checks.shared.ledger import LOST_AFTER, Ledger, NewRun, Verdict, WorkerLedger
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
