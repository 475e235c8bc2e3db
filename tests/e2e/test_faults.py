"""Faults injected into the running system (real processes: Redis, beat, workers of two sites,
consumer, Nagios 4): each test injects one, then shows the recovery and counts.

The accounting is the product's promise: every run the beat enqueued ends as a result (a
worker published it: Redis's append-only file has every write) or an orphan report (the
consumer logs each), and what reaches Nagios is each forwarded result once.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

from smtp_checks.shared.keys import KEYS
from tests.e2e.pipeline import Pipeline, host, nagios_line, wait_until
from tests.smtp_servers import ServerPool, refused_port

LOGIN = {"login": {}}
OK = "OK: Response time "
REFUSED = "CRITICAL: Unable to connect to SMTP: Connection refused"
ORPHANED = re.compile(
    r"UNKNOWN: \(service check orphaned: no worker on checks\.lyon ran this check within "
    r"\d+ s, is a worker of that site running\?\)"
)


def shows(state: str, start: str) -> Callable[[dict[str, str]], bool]:
    return lambda block: (
        block.get("current_state") == state and block.get("plugin_output", "").startswith(start)
    )


def exactly_one_outcome(
    pipeline: Pipeline, run_ids: list[str], *, at_least_once: frozenset[str] = frozenset()
) -> dict[str, tuple[int, int]]:
    """Each run ended as one result or one orphan report, not both, not neither. A run in
    `at_least_once` (caught by the fault) may also have been run again (delivery is at least
    once) or reported and then run late, but it is never missing nor reported twice."""
    outcomes = pipeline.outcomes(run_ids)
    wrong = {
        run: outcome
        for run, outcome in outcomes.items()
        if outcome not in {(1, 0), (0, 1)}
        and not (run in at_least_once and sum(outcome) >= 1 and outcome[1] <= 1)
    }
    assert not wrong, f"runs without exactly one outcome (results, orphans): {wrong}"
    return outcomes


def test_a_worker_killed_mid_check_has_its_checks_redelivered_or_reported(
    pipelines: Callable[..., Pipeline], server_pool: ServerPool
) -> None:
    slow = server_pool.smtp(banner_delay=1.5)  # a session stays open 1.5 s: a kill finds one
    hosts = [
        host("p-slow", "paris", slow.port, LOGIN),
        host("p-ok", "paris", server_pool.smtp().port, LOGIN),
        host("l-ok", "lyon", server_pool.smtp().port, LOGIN),
    ]
    pipeline = pipelines(
        hosts, workers={"paris": ["paris-1", "paris-2"], "lyon": ["lyon-1"]}, interval=3, timeout=2
    )
    pipeline.start(roles=["beat", "paris-1", "lyon-1", "consumer"])
    pipeline.wait_for_services(shows("0", OK), 20, "every service OK")
    # paris-1 is the only paris worker: a session open on the slow server is its check.
    wait_until(lambda: slow.active_sessions >= 1, 10, "a check in flight on the slow server")
    in_hand = [run for run in pipeline.outstanding() if run.site == "paris"]
    pipeline.kill("paris-1")
    killed_at = time.time()
    assert any(run.host == "p-slow" for run in in_hand), in_hand
    # Its replacement comes up (as systemd, or `smtp-checks run`, would restart it).
    pipeline.start_role("paris-2")
    # The runs paris-1 had in hand are redelivered (and run, or superseded by a newer run of
    # their check and reported as orphans of the dead worker) or reported.
    wait_until(
        lambda: all(sum(o) for o in pipeline.outcomes([r.run_id for r in in_hand]).values()),
        20,
        f"an outcome for each of the {len(in_hand)} runs paris-1 had in hand",
    )
    # No service went silent: each one's last check in Nagios moved past the kill.
    wait_until(
        lambda: all(when > killed_at for when in pipeline.nagios.last_checks().values()),
        20,
        "a result after the kill for every service",
    )
    pipeline.wait_for_services(shows("0", OK), 15, "every service OK again")
    runs = pipeline.settle()
    outcomes = exactly_one_outcome(
        pipeline, list(runs), at_least_once=frozenset(r.run_id for r in in_hand)
    )
    # Each one paris-1 had not finished went to paris-2 (redelivered: it ran it) or was
    # reported as an orphan (superseded meanwhile by the check's next run, or never taken).
    published = pipeline.published()
    for run in in_hand:
        workers = {r.worker for r in published if r.run_id == run.run_id}
        assert (
            "paris-1@e2e" in workers or "paris-2@e2e" in workers or outcomes[run.run_id][1] == 1
        ), (run, outcomes[run.run_id], workers)
    assert all(pipeline.alive()[name] for name in ("paris-2", "lyon-1", "consumer"))


def test_a_redis_restart_is_ridden_out_by_every_role(
    pipelines: Callable[..., Pipeline], server_pool: ServerPool
) -> None:
    hosts = [
        host("p-ok", "paris", server_pool.smtp().port, LOGIN),
        host("l-ok", "lyon", server_pool.smtp().port, LOGIN),
        host("l-down", "lyon", refused_port(), LOGIN),
    ]
    pipeline = pipelines(hosts, resend_interval=3)
    pipeline.start()
    pipeline.wait_for_services(lambda b: b.get("has_been_checked") == "1", 20, "every service")
    down_at = time.time()
    pipeline.restart_redis(down_for=3.0)
    back_at = time.time()
    assert all(pipeline.alive().values()), pipeline.alive()
    # Every role reconnected by itself: the beat enqueues, the workers run and publish, the
    # consumer records (a newer result for every service) and forwards (Nagios hears of it).
    wait_until(
        lambda: (
            all(state["check_time"] > back_at + 0.5 for state in pipeline.states().values())
            and len(pipeline.states()) == len(pipeline.services)
        ),
        30,
        "a result recorded after the restart for every service",
    )
    wait_until(
        lambda: all(when > back_at for when in pipeline.nagios.last_checks().values()),
        20,
        "every service forwarded to Nagios after the restart",
    )
    pipeline.wait_for_services(shows("0", OK), 10, "p-ok OK", services=[("p-ok", "SMTP-Login")])
    pipeline.wait_for_services(
        shows("2", REFUSED), 10, "l-down CRITICAL", services=[("l-down", "SMTP-Login")]
    )
    assert all(pipeline.alive().values()), pipeline.alive()
    runs = pipeline.settle()
    # Runs around the gap may be late or orphaned, but every run has exactly one outcome,
    # and every run enqueued once Redis was back came back as a result.
    caught = frozenset(
        run.run_id
        for run in runs.values()
        if down_at - pipeline.interval - pipeline.timeout < run.scheduled_for < back_at + 1
    )
    outcomes = exactly_one_outcome(pipeline, list(runs), at_least_once=caught)
    after = [run for run in runs.values() if run.scheduled_for > back_at + 1]
    assert after
    assert all(outcomes[run.run_id] == (1, 0) for run in after)
    # And each stops cleanly when asked.
    assert pipeline.roles["beat"].exit_codes == [0]
    assert pipeline.stop("consumer") == 0
    for name in pipeline.workers():
        assert pipeline.stop(name) == 0


def test_a_killed_consumer_restarts_with_every_state_and_forwards_nothing_twice(
    pipelines: Callable[..., Pipeline], server_pool: ServerPool
) -> None:
    hosts = [
        host("p-ok", "paris", server_pool.smtp().port, LOGIN),
        host("l-ok", "lyon", server_pool.smtp().port, LOGIN),
        host("l-down", "lyon", refused_port(), LOGIN),
    ]
    # A second forwarder, a plain file, is the ledger of what was queued for Centreon: the
    # consumer appends each forwarded result to both outboxes in one step.
    pipeline = pipelines(hosts, resend_interval=4, spool=True)
    nagios_outbox = pipeline.outbox_key(pipeline.nagios.command_file)
    spool_path = pipeline.spool
    assert spool_path is not None
    spool_outbox = pipeline.outbox_key(spool_path)
    pipeline.start()
    expected = {
        ("p-ok", "SMTP-Login"): shows("0", OK),
        ("l-ok", "SMTP-Login"): shows("0", OK),
        ("l-down", "SMTP-Login"): shows("2", REFUSED),
    }
    for key, predicate in expected.items():
        pipeline.wait_for_services(predicate, 20, f"{key} right", services=[key])
    before = {key: state["status"] for key, state in pipeline.states().items()}
    pipeline.kill("consumer")
    # What it had in hand: a batch of results, a batch being delivered to each forwarder.
    client = pipeline.client
    results_in_hand = sum(client.llen(k) for k in client.scan_iter(KEYS.results_inflight("*")))
    nagios_in_hand = client.llen(f"{nagios_outbox}:inflight")
    spool_in_hand = client.llen(f"{spool_outbox}:inflight")
    # Results pile up while no consumer runs.
    wait_until(lambda: client.llen(KEYS.results) >= 3, 15, "results waiting")
    pipeline.start_role("consumer")
    restarted_at = time.time()
    wait_until(lambda: pipeline.results_waiting() == 0, 40, "the waiting results recorded")
    # The new consumer forwards once the dead one's turn to deliver has lapsed (30 s).
    wait_until(
        lambda: all(when > restarted_at for when in pipeline.nagios.last_checks().values()),
        45,
        "every service forwarded to Nagios by the new consumer",
    )
    for key, predicate in expected.items():
        pipeline.wait_for_services(predicate, 1, f"{key} right", services=[key])
    runs = pipeline.settle()
    exactly_one_outcome(pipeline, list(runs))
    # No state lost: the same state for every service, and none seen as a change.
    assert {key: state["status"] for key, state in pipeline.states().items()} == before
    wait_until(
        lambda: (
            not pipeline.outbox(pipeline.nagios.command_file) and not pipeline.outbox(spool_path)
        ),
        10,
        "both outboxes delivered",
    )
    assert pipeline.stop("consumer") == 0
    (counts,) = pipeline.consumer_counts()  # the second life's (the first was killed)
    assert counts.get("change", 0) == 0, counts
    assert counts.get("duplicate", 0) + counts.get("old", 0) <= results_in_hand, counts
    assert counts["same"] + counts.get("refresh", 0) > 0
    # Nothing forwarded twice, but for a batch in delivery when the consumer died: Nagios
    # read what the spool got (distinct lines: every forwarded result once), minus what was
    # left undelivered to either at the stop.
    spool = pipeline.spool_lines()
    distinct = len(set(spool))
    assert len(spool) - distinct <= spool_in_hand
    left = len(pipeline.outbox(pipeline.nagios.command_file))
    left_spool = len(pipeline.outbox(spool_path))
    expected_reads = distinct + left_spool - left
    wait_until(
        lambda: len(pipeline.nagios.commands()) >= expected_reads, 10, "Nagios read everything"
    )
    extra = len(pipeline.nagios.commands()) - expected_reads
    assert 0 <= extra <= nagios_in_hand, (extra, nagios_in_hand)


def test_results_wait_for_a_stopped_nagios_and_arrive_in_order(
    pipelines: Callable[..., Pipeline], server_pool: ServerPool
) -> None:
    p_ok = server_pool.smtp()
    hosts = [
        host("p-ok", "paris", p_ok.port, LOGIN),
        host("l-ok", "lyon", server_pool.smtp().port, LOGIN),
        host("l-down", "lyon", refused_port(), LOGIN),
    ]
    pipeline = pipelines(hosts, resend_interval=2)
    pipeline.start()
    pipeline.wait_for_services(lambda b: b.get("has_been_checked") == "1", 20, "every service")
    pipeline.wait_for_services(shows("0", OK), 10, "p-ok OK", services=[("p-ok", "SMTP-Login")])
    pipeline.nagios.stop()
    read_before = len(pipeline.nagios.commands())
    # While Centreon is away, p-ok's server dies: a state change that must reach it later.
    p_ok.stop()
    command_file = pipeline.nagios.command_file
    wait_until(
        lambda: (
            any(r.host == "p-ok" and r.status == 2 for r in pipeline.outbox(command_file))
            and len(pipeline.outbox(command_file)) >= 6
        ),
        20,
        "results waiting in the outbox, p-ok's change among them",
    )
    waiting = pipeline.outbox(command_file)
    pipeline.nagios.start()
    # They arrive, first to last, in the order they were queued.
    wait_until(
        lambda: len(pipeline.nagios.commands()) >= read_before + len(waiting),
        30,
        f"Nagios read the {len(waiting)} waiting results",
    )
    read = [command for _, command in pipeline.nagios.commands()[read_before:]]
    assert read[: len(waiting)] == [nagios_line(result) for result in waiting]
    pipeline.wait_for_services(
        shows("2", REFUSED), 10, "p-ok CRITICAL", services=[("p-ok", "SMTP-Login")]
    )
    pipeline.wait_for_services(shows("0", OK), 10, "l-ok OK", services=[("l-ok", "SMTP-Login")])
    assert all(pipeline.alive().values()), pipeline.alive()


def test_a_site_without_workers_shows_orphans_while_the_other_carries_on(
    pipelines: Callable[..., Pipeline], server_pool: ServerPool
) -> None:
    hosts = [
        host("p-ok", "paris", server_pool.smtp().port, LOGIN),
        host("l-one", "lyon", server_pool.smtp().port, LOGIN),
        host("l-two", "lyon", server_pool.smtp().port, LOGIN),
    ]
    pipeline = pipelines(
        hosts, workers={"paris": ["paris-1"], "lyon": ["lyon-1", "lyon-2"]}, orphan_grace=3
    )
    paris = [("p-ok", "SMTP-Login")]
    lyon = [("l-one", "SMTP-Login"), ("l-two", "SMTP-Login")]
    pipeline.start()
    pipeline.wait_for_services(shows("0", OK), 20, "every service OK")
    for name in pipeline.workers("lyon"):
        assert pipeline.stop(name) == 0
    stopped_at = time.time()
    paris_states: list[str] = []

    def orphaned(block: dict[str, str]) -> bool:
        paris_states.append(pipeline.nagios.services()[paris[0]]["current_state"])
        return block.get("current_state") == "3" and bool(
            ORPHANED.fullmatch(block.get("plugin_output", ""))
        )

    # The next run is due within an interval, stale an interval later, reported `grace`
    # after that (the sweep runs every second; a few seconds more for slow machines).
    bound = 2 * pipeline.interval + pipeline.orphan_grace + 5
    pipeline.wait_for_services(orphaned, bound, "lyon's services orphaned", services=lyon)
    orphaned_at = time.time()
    assert orphaned_at - stopped_at <= bound
    # Paris carried on: OK all along, and checked after lyon's orphans showed.
    assert set(paris_states) == {"0"}
    wait_until(
        lambda: pipeline.nagios.last_checks()[paris[0]] > orphaned_at,
        15,
        "paris checked after lyon went orphan",
    )
    pipeline.wait_for_services(shows("0", OK), 1, "paris OK", services=paris)
    runs = pipeline.settle()
    outcomes = exactly_one_outcome(pipeline, list(runs))
    lyon_after = [
        r for r in runs.values() if r.queue == "checks.lyon" and r.scheduled_for > stopped_at
    ]
    assert lyon_after
    assert all(outcomes[r.run_id] == (0, 1) for r in lyon_after)
    assert all(outcomes[r.run_id] == (1, 0) for r in runs.values() if r.queue == "checks.paris")


def test_a_target_that_starts_hanging_times_out_without_slowing_the_others(
    pipelines: Callable[..., Pipeline], server_pool: ServerPool
) -> None:
    hanging = server_pool.smtp()
    hosts = [
        host("p-hang", "paris", hanging.port, LOGIN),
        host("p-ok", "paris", server_pool.smtp().port, LOGIN),
        host("l-ok", "lyon", server_pool.smtp().port, LOGIN),
    ]
    # One paris worker: p-hang's checks and p-ok's share its event loop.
    pipeline = pipelines(hosts, interval=2, timeout=1.0)
    pipeline.start()
    pipeline.wait_for_services(shows("0", OK), 20, "every service OK")
    # From now on the server accepts connections and never says a word.
    hanging._state.config = replace(hanging._state.config, banner_delay=600.0)
    hung_at = time.time()
    timeout_output = "CRITICAL: Unable to connect to SMTP: timeout after 1s waiting for the banner"
    pipeline.wait_for_services(
        shows("2", timeout_output),
        pipeline.interval + pipeline.timeout + 5,
        "p-hang CRITICAL on its timeout",
        services=[("p-hang", "SMTP-Login")],
    )
    # Three more intervals of hanging, then count.
    time.sleep(3 * pipeline.interval)
    runs = pipeline.settle()
    exactly_one_outcome(pipeline, list(runs))
    since = [r for r in pipeline.published() if r.scheduled_for > hung_at]
    hung = [r for r in since if r.host == "p-hang"]
    others = [r for r in since if r.host != "p-hang"]
    assert len(hung) >= 3
    assert len(others) >= 6
    for result in hung:
        # Ended by its deadline: the timeout after the worker took it, give or take a little.
        assert result.outcome.value == "timeout", result
        assert result.started_at is not None
        assert pipeline.timeout - 0.05 <= result.ended_at - result.started_at, result
        assert result.ended_at - result.received_at <= pipeline.timeout + 0.5, result
    for result in others:
        # At their pace: each ended well within the second p-hang's checks hang, OK, and
        # measured as fast as the server is.
        assert result.outcome.value == "success", result
        assert result.ended_at - result.scheduled_for <= 0.75, result
        assert result.time is not None and result.time < 0.2, result
    # Each of the others' runs came back: one per interval, none skipped.
    by_check = Counter(r.check_id for r in others)
    enqueued = Counter(r.check_id for r in runs.values() if r.scheduled_for > hung_at)
    assert by_check == {k: v for k, v in enqueued.items() if k != "p-hang/login"}
    pipeline.wait_for_services(
        shows("0", OK),
        1,
        "the others OK",
        services=[("p-ok", "SMTP-Login"), ("l-ok", "SMTP-Login")],
    )
