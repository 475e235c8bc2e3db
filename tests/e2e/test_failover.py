"""Redis Sentinel failover under the whole system (real processes: a master, a replica and
three sentinels; the beat, a worker on each of two sites, the consumer; Nagios 4).

The master is SIGKILLed mid-run after 0.6 s of writes its replica never received (it was
stopped meanwhile), as a crash under replication lag: those writes are lost, and the tests
show what the README promises of them. Every role finds the promoted replica by itself;
every service is fresh in Nagios again within 30 s of the promotion; the results the
failover lost are published again by their workers; every run the new master knows of
ends as one result or one orphan report; a run lost with its record is followed by its
check's next run; nothing is forwarded twice. Then the old master comes back, as a
replica, and nothing breaks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from smtp_checks.shared.keys import KEYS
from tests.e2e.pipeline import Pipeline, aof_writes, host, wait_until
from tests.e2e.test_faults import LOGIN, OK, exactly_one_outcome, shows
from tests.sentinel import SentinelGroup
from tests.smtp_servers import ServerPool

LAG = 0.6  # seconds of writes the replica misses before the master dies
RECOVERY_BOUND = 30.0  # seconds from the promotion to every service fresh in Nagios


@pytest.fixture
def group() -> Iterator[SentinelGroup]:
    with SentinelGroup() as started:
        yield started


def sentinel_pipeline(
    pipelines: Callable[..., Pipeline], server_pool: ServerPool, group: SentinelGroup
) -> Pipeline:
    hosts = [
        host(f"{site[0]}-{n}", site, server_pool.smtp().port, LOGIN)
        for site in ("paris", "lyon")
        for n in range(3)
    ]
    return pipelines(hosts, sentinel=group, interval=1, timeout=1.0, resend_interval=3, spool=True)


@dataclass(frozen=True)
class Failover:
    killed_at: float  # wall time of the kill
    promoted_after: float  # seconds from the kill to the sentinels naming the replica
    fresh_after: float  # seconds from the kill to every service fresh in Nagios


def fail_over(pipeline: Pipeline, group: SentinelGroup, *, lag: float = LAG) -> Failover:
    """Kill the master under `lag`, wait for the promotion and for every service to be fresh
    in Nagios again (a result checked after the promotion)."""
    pipeline.wait_for_services(shows("0", OK), 30, "every service OK")
    group.wait_for_replica_sync()
    killed_at, killed = time.time(), group.kill_master_unreplicated(lag)
    promotion = group.wait_for_promotion()
    promoted_at = killed_at + (promotion.at - killed)
    wait_until(
        lambda: all(at > promoted_at for at in pipeline.nagios.last_checks().values()),
        RECOVERY_BOUND,
        "every service fresh in Nagios after the promotion",
    )
    return Failover(killed_at, promotion.at - killed, time.time() - killed_at)


def forwarded_twice(pipeline: Pipeline) -> list[str]:
    """Results written twice to the spool (a command file that keeps every line, with its
    check time), by service: a line repeated right after itself, or a check time going
    back (a batch sent again). Anything else forwarded for a service differs from what
    came before it: a new state, or a refresh stamped anew. (A line may come again later:
    a real result whose time was raised to the last time forwarded, after an UNKNOWN.)"""
    last: dict[str, tuple[int, str]] = {}
    twice = []
    for line in pipeline.spool_lines():
        stamp, _, command = line.partition("] ")
        service = ";".join(command.split(";")[1:3])
        check_time = int(stamp.lstrip("["))
        previous = last.get(service)
        if previous is not None and (previous[1] == line or check_time < previous[0]):
            twice.append(line)
        last[service] = (check_time, line)
    return twice


def test_a_master_killed_mid_run_is_ridden_out_and_nothing_it_lost_goes_silent(
    group: SentinelGroup, pipelines: Callable[..., Pipeline], server_pool: ServerPool
) -> None:
    # The group first: set up before the pipeline, it is stopped after it.
    pipeline = sentinel_pipeline(pipelines, server_pool, group)
    pipeline.start()
    old_master = group.instance_at(group.current_master())
    failover = fail_over(pipeline, group)
    killed_at, recovery = failover.killed_at, failover.fresh_after
    assert all(pipeline.alive().values()), pipeline.alive()
    pipeline.wait_for_services(shows("0", OK), 20, "every service OK again")
    runs = pipeline.settle()
    assert all(pipeline.alive()[name] for name in pipeline.roles if name != "beat")

    # What the new master knows of: the runs recorded in the ledger it replicated or took.
    survived = pipeline.writes()
    known = {
        field.decode()
        for command in survived
        if command[0].upper() == b"HSET" and command[1] == KEYS.outstanding_runs.encode()
        for field in command[2::2]
    }
    # Runs enqueued around the kill may have run twice (a take the failover forgot: the
    # message was given back) or been reported, then answered late.
    window = {
        r.run_id
        for r in runs.values()
        if killed_at - LAG - 3 <= r.scheduled_for <= killed_at + recovery
    }
    exactly_one_outcome(
        pipeline, [run for run in runs if run in known], at_least_once=frozenset(window)
    )
    # Every result the old master took, the new one has: the workers saw the master change
    # and published their last results again (the consumer knew those it had).
    answered = {r.run_id for r in pipeline.published(survived)}
    lost = {r.run_id for r in pipeline.published(aof_writes(old_master.directory))} - answered
    assert not lost, f"results the failover lost: {lost}"
    for name in pipeline.workers():
        assert "publishing the last" in pipeline.log(name), f"{name} did not publish again"
    # A run lost with its record: its check ran again at its next run, with a result.
    for run in (r for r in runs.values() if r.run_id not in known):
        assert run.run_id in window, f"{run} lost, yet enqueued far from the failover"
        later = [
            r
            for r in runs.values()
            if r.check_id == run.check_id and r.scheduled_for > run.scheduled_for
        ]
        assert any(r.run_id in answered for r in later), f"{run.check_id} never ran again"
    assert not forwarded_twice(pipeline)


def test_the_old_master_back_as_a_replica_breaks_nothing(
    group: SentinelGroup, pipelines: Callable[..., Pipeline], server_pool: ServerPool
) -> None:
    # The group first: set up before the pipeline, it is stopped after it.
    pipeline = sentinel_pipeline(pipelines, server_pool, group)
    pipeline.start()
    fail_over(pipeline, group)
    group.restart_old_master()
    group.wait_for_replica_sync()
    # Every service fresh again, twice over, with the old master a replica all along.
    for _ in range(2):
        since = time.time()
        wait_until(
            lambda since=since: all(at > since for at in pipeline.nagios.last_checks().values()),
            RECOVERY_BOUND,
            "every service fresh in Nagios with the old master back",
        )
    assert all(pipeline.alive().values()), pipeline.alive()
    pipeline.wait_for_services(shows("0", OK), 10, "every service OK")
    # `smtp-checks status` finds the new master through the sentinels too.
    code, output = pipeline.status()
    assert (code, output.split(":")[0]) == (0, "OK"), output
    pipeline.settle()
    assert not forwarded_twice(pipeline)
    assert group.killed is None and len(group.replicas()) == 1  # the old master, a replica
