"""The result consumer on a real Redis (database 11): state changes, freshness, orphans,
the outbox, the command file, and a consumer fed through the broker.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from smtp_checks.cli.consumer import ConsumerService
from smtp_checks.consumer.deliverer import Deliverer
from smtp_checks.consumer.forwarders.base import ForwardError, PassiveResult
from smtp_checks.consumer.forwarders.command_file import (
    PIPE_BUF,
    CommandFileForwarder,
    command_line,
)
from smtp_checks.consumer.outbox import Outbox
from smtp_checks.consumer.processor import ResultProcessor, starve_after
from smtp_checks.consumer.service_states import ServiceStates
from smtp_checks.shared.backoff import Backoff
from smtp_checks.shared.config import Config, load_config
from smtp_checks.shared.heartbeats import SiteWorkers
from smtp_checks.shared.ledger import Ledger, NewRun
from smtp_checks.shared.messages import CheckRequest, CheckResult, Handling, Outcome
from smtp_checks.shared.probe.result import ProbeResult
from smtp_checks.shared.result_queue import ResultQueue, backlog_bound
from smtp_checks.workers.runner import with_status
from tests.passive_results import passive as passive_result
from tests.redis_fixtures import flushed_redis_db

DB = 11


@pytest.fixture
def state_url() -> Iterator[str]:
    yield from flushed_redis_db(DB)


@pytest.fixture
def client(state_url: str) -> redis.Redis:
    return redis.Redis.from_url(state_url)


def write_config(tmp_path: Path, url: str, **centreon: Any) -> Config:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "broker_url": url,
        "sites": {"paris": {}},
        "hosts": [
            {"name": "mx1", "address": "192.0.2.1", "site": "paris", "checks": {"login": {"warning": "1"}}},
            {"name": "mx2", "address": "192.0.2.2", "site": "paris", "checks": {"login": {}}},
        ],
        "centreon": {"resend_interval": 300, **centreon},
    }))  # fmt: skip
    return load_config(path)


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_result(
    config: Config, host: str = "mx1", *, time_: float = 0.2, outcome: Outcome = Outcome.SUCCESS,
    detail: str = "", at: float = 1_800_000_000.0,
) -> CheckResult:  # fmt: skip
    check = next(c for c in config.scheduled_checks() if c.host == host)
    request = CheckRequest.from_scheduled(check, scheduled_for=at - 1, stale_at=at + 59)
    handling = Handling(worker="w1@test", received_at=at - 1, queue_wait=0.0)
    if outcome is Outcome.SUCCESS:
        return CheckResult.from_probe(request, handling, ProbeResult(time=time_), at - time_)
    return CheckResult.not_run(request, handling, outcome, detail).model_copy(
        update={"ended_at": at}
    )


def payload(result: CheckResult) -> bytes:
    """A result as a worker puts it on the result queue."""
    return result.model_dump_json().encode()


class Harness:
    def __init__(
        self,
        config: Config,
        client: redis.Redis,
        clock: Clock,
        sites: dict[str, SiteWorkers] | None = None,
    ) -> None:
        self.outbox = Outbox(client, "test", max_length=1000)
        self.states = ServiceStates(
            client,
            [self.outbox.key],
            resend_interval=300,
            starve_after={
                (c.host, c.service): starve_after(c, 300) for c in config.scheduled_checks()
            },
        )
        self.ledger = Ledger(client, grace=30)
        self.sites = sites if sites is not None else {}
        self.processor = ResultProcessor(
            config, self.states, self.ledger, sites=lambda now: self.sites, clock=clock
        )

    def forwarded(self) -> list[PassiveResult]:
        batch = self.outbox.take(10_000)
        self.outbox.delivered()
        return batch.results


@pytest.fixture
def harness(tmp_path: Path, state_url: str, client: redis.Redis) -> tuple[Harness, Config, Clock]:
    config = write_config(tmp_path, state_url)
    clock = Clock()
    return Harness(config, client, clock), config, clock


def test_state_changes_are_forwarded_and_unchanged_states_wait_for_the_resend(
    harness: tuple[Harness, Config, Clock],
) -> None:
    h, config, clock = harness
    kinds = [d.kind for d in h.processor.handle([payload(make_result(config, at=clock.now))])]
    assert kinds == ["change"]
    clock.now += 60
    assert [d.kind for d in h.processor.handle([payload(make_result(config, at=clock.now))])] == [
        "same"
    ]
    clock.now += 60
    kinds = [
        d.kind for d in h.processor.handle([payload(make_result(config, time_=2.5, at=clock.now))])
    ]
    assert kinds == ["change"]  # over the warning threshold: OK -> WARNING
    clock.now += 300
    assert [
        d.kind for d in h.processor.handle([payload(make_result(config, time_=2.6, at=clock.now))])
    ] == ["refresh"]
    sent = h.forwarded()
    assert [(p.status, p.kind) for p in sent] == [(0, "change"), (1, "change"), (1, "refresh")]
    assert sent[0].output == "OK: Response time 0.200 second(s)"
    assert sent[0].perfdata == "'time'=0.200s;0:1;;;"
    assert sent[1].plugin_output == "WARNING: Response time 2.500 second(s) | 'time'=2.500s;0:1;;;"


def test_the_consumer_renders_the_bytes_the_cli_prints(
    harness: tuple[Harness, Config, Clock],
) -> None:
    h, config, clock = harness
    h.processor.handle(
        [
            payload(
                make_result(
                    config,
                    "mx2",
                    outcome=Outcome.CREDENTIAL,
                    detail="credential env:X not found",
                    at=clock.now,
                )
            )
        ]
    )
    (sent,) = h.forwarded()
    assert (sent.status, sent.output) == (
        3,
        "UNKNOWN: Cannot run check: credential env:X not found (worker w1@test) ",
    )


def test_a_redelivered_result_is_not_forwarded_twice(
    harness: tuple[Harness, Config, Clock],
) -> None:
    h, config, clock = harness
    result = make_result(config, at=clock.now)
    assert [d.kind for d in h.processor.handle([payload(result), payload(result)])] == [
        "change",
        "duplicate",
    ]
    assert len(h.forwarded()) == 1


def test_an_older_result_does_not_overwrite_a_newer_one(
    harness: tuple[Harness, Config, Clock],
) -> None:
    h, config, clock = harness
    newer = make_result(config, at=clock.now)
    older = make_result(config, time_=9, at=clock.now - 60)
    assert [d.kind for d in h.processor.handle([payload(newer), payload(older)])] == [
        "change",
        "old",
    ]


def test_state_survives_a_consumer_restart(
    harness: tuple[Harness, Config, Clock], client: redis.Redis
) -> None:
    h, config, clock = harness
    h.processor.handle([payload(make_result(config, at=clock.now))])
    clock.now += 60
    restarted = Harness(config, client, clock)  # a new process: nothing kept in memory
    assert [
        d.kind for d in restarted.processor.handle([payload(make_result(config, at=clock.now))])
    ] == ["same"]


def test_freshness_refresh_resends_the_current_state_with_a_fresh_time(
    harness: tuple[Harness, Config, Clock],
) -> None:
    h, config, clock = harness
    h.processor.handle([payload(make_result(config, at=clock.now))])
    h.forwarded()
    clock.now += 299
    h.processor.sweep()
    assert h.forwarded() == []
    clock.now += 2
    h.processor.sweep()
    (refresh,) = h.forwarded()
    assert (refresh.kind, refresh.status, refresh.check_time) == (
        "refresh",
        0,
        pytest.approx(clock.now),
    )
    assert refresh.output == "OK: Response time 0.200 second(s)"


def test_orphaned_runs_become_unknown_once(
    harness: tuple[Harness, Config, Clock], client: redis.Redis
) -> None:
    h, config, clock = harness
    check = config.scheduled_checks()[1]
    request = CheckRequest.from_scheduled(
        check, scheduled_for=clock.now - 100, stale_at=clock.now - 40
    )
    answered = CheckRequest.from_scheduled(
        config.scheduled_checks()[0], scheduled_for=clock.now - 100, stale_at=clock.now - 40
    )
    h.ledger.enqueue([NewRun(request)])
    h.ledger.enqueue([NewRun(answered)])
    h.processor.handle(
        [
            payload(
                make_result(config, "mx1", at=clock.now - 80).model_copy(
                    update={"identity": answered.identity}
                )
            )
        ]
    )
    h.forwarded()
    clock.now += 5  # past stale time + grace (30 s) for both
    h.processor.sweep()
    h.processor.sweep()  # a second sweep (or consumer) finds nothing more
    (orphan,) = h.forwarded()
    assert (orphan.host, orphan.status) == ("mx2", 3)
    assert orphan.output == (
        "UNKNOWN: (service check orphaned: no worker on checks.paris ran this check within "
        "105 s, is a worker of that site running?) "
    )
    assert h.ledger.count() == 0


def orphan_of(h: Harness, config: Config, host: str, *, scheduled_for: float) -> CheckRequest:
    """A run of `host` enqueued, never answered, and reported as an orphan by a sweep."""
    check = next(c for c in config.scheduled_checks() if c.host == host)
    request = CheckRequest.from_scheduled(
        check, scheduled_for=scheduled_for, stale_at=scheduled_for + 60
    )
    h.ledger.enqueue([NewRun(request)])
    (decision,) = h.processor.sweep()
    assert decision.result.status == 3
    return request


def result_of_run(config: Config, request: CheckRequest, *, ended_at: float) -> CheckResult:
    return make_result(config, request.host, at=ended_at).model_copy(
        update={"identity": request.identity}
    )


def test_a_late_real_result_replaces_the_orphan_of_its_run_and_time_never_goes_back(
    harness: tuple[Harness, Config, Clock],
) -> None:
    h, config, clock = harness
    h.processor.handle([payload(make_result(config, "mx2", at=clock.now - 200))])
    request = orphan_of(h, config, "mx2", scheduled_for=clock.now - 120)  # stamped `now`
    # Its worker answers after all (it was slow, not dead): the result ended before the
    # orphan's stamp, yet it is the newest measurement, and wins.
    late = result_of_run(config, request, ended_at=clock.now - 30)
    assert [d.kind for d in h.processor.handle([payload(late)])] == ["change"]
    sent = h.forwarded()
    assert [(p.status, p.kind) for p in sent] == [(0, "change"), (3, "change"), (0, "change")]
    assert sent[2].check_time == sent[1].check_time == pytest.approx(clock.now)


def test_the_real_result_of_an_orphaned_run_wins_whatever_the_digits_of_its_times(
    harness: tuple[Harness, Config, Clock],
) -> None:
    """Redis's cjson keeps 14 significant digits of a time (an epoch to 1/10,000 s): the
    orphan's stored slot may be rounded up past the real result's own."""
    h, config, clock = harness
    request = orphan_of(h, config, "mx2", scheduled_for=clock.now - 199.876543211)
    late = result_of_run(config, request, ended_at=clock.now - 30)
    assert [d.kind for d in h.processor.handle([payload(late)])] == ["change"]


def test_a_consumer_started_again_after_a_long_stop_gives_workers_time_to_answer(
    harness: tuple[Harness, Config, Clock],
) -> None:
    h, _config, clock = harness
    services = [("mx1", "SMTP-Login"), ("mx2", "SMTP-Login")]
    h.states.watch_starvation(services, clock.now - 7200)  # the last consumer, hours ago
    clock.now += 1  # started again: its clock starts now, no burst of starved UNKNOWNs
    h.states.watch_starvation(services, clock.now)
    assert h.states.starving(clock.now) == []


def test_an_orphan_never_hides_a_newer_real_result_nor_an_older_result_the_orphan(
    harness: tuple[Harness, Config, Clock],
) -> None:
    h, config, clock = harness
    check = next(c for c in config.scheduled_checks() if c.host == "mx2")
    earlier = CheckRequest.from_scheduled(
        check, scheduled_for=clock.now - 200, stale_at=clock.now - 140
    )
    newer = CheckRequest.from_scheduled(
        check, scheduled_for=clock.now - 150, stale_at=clock.now - 90
    )
    h.processor.handle([payload(result_of_run(config, newer, ended_at=clock.now - 145))])
    # The orphan of an earlier run, reported after a newer run's result: no news.
    h.ledger.enqueue([NewRun(earlier)])
    assert [d.kind for d in h.processor.sweep()] == ["old"]
    # The other way round: the orphan of a later run wins over a result of an earlier one.
    later = orphan_of(h, config, "mx2", scheduled_for=clock.now - 100)
    assert later.scheduled_for > newer.scheduled_for
    older_result = result_of_run(config, earlier, ended_at=clock.now - 10)
    assert [d.kind for d in h.processor.handle([payload(older_result)])] == ["old"]


def test_a_starved_service_gets_one_unknown_that_says_why_and_a_real_result_ends_it(
    tmp_path: Path, state_url: str, client: redis.Redis
) -> None:
    config = write_config(tmp_path, state_url)
    clock = Clock()
    paris = SiteWorkers("paris", workers=1, checks_per_minute=0.6, queue="checks.paris",
                        queue_depth=2, queue_empty_at=None)  # fmt: skip
    h = Harness(config, client, clock, sites={"paris": paris})
    h.processor.handle([payload(make_result(config, "mx1", at=clock.now))])
    h.forwarded()
    clock.now += 299  # starved after max(3 x 60 s, resend 300 s)
    assert h.processor.sweep() == []
    clock.now += 2
    assert h.processor.sweep(behind=True) == []  # its result may be in the backlog
    (decision,) = [d for d in h.processor.sweep() if d.kind != "refresh"]
    assert decision.kind == "change"
    assert decision.result.output == (
        "UNKNOWN: no result for 301 s: site paris runs 1 of the 2 checks per minute its config "
        "asks for (queue 2, 1 worker) "
    )
    clock.now += 10
    assert [d for d in h.processor.sweep() if d.kind != "refresh"] == []  # one, not one a sweep
    back = make_result(config, "mx1", at=clock.now)
    assert [d.kind for d in h.processor.handle([payload(back)])] == ["change"]
    assert [(p.status, p.kind) for p in h.forwarded()] == [
        (0, "refresh"),
        (3, "change"),
        (0, "change"),
    ]


def test_unknown_services_and_invalid_messages_are_counted_not_forwarded(
    harness: tuple[Harness, Config, Clock],
) -> None:
    h, config, clock = harness
    result = make_result(config, at=clock.now)
    stranger = result.model_copy(update={"identity": replace(result.identity, host="nobody")})
    h.processor.handle([payload(stranger), b"garbage", b'{"schema_version": 1}'])
    assert h.forwarded() == []
    assert h.processor.counts["unknown_service"] == 1 and h.processor.counts["invalid"] == 2


def test_hostile_server_text_comes_out_as_one_harmless_line(
    harness: tuple[Harness, Config, Clock],
) -> None:
    h, config, clock = harness
    hostile = "ready\n[123] PROCESS_SERVICE_CHECK_RESULT;victim;svc;0;owned | 'x'=1;;;;\r\n\x00"
    raw = make_result(config, outcome=Outcome.CREDENTIAL, at=clock.now).model_dump(mode="json")
    raw["detail"] = hostile  # as if a worker (or anything on the way) let it through raw
    h.processor.handle([json.dumps(raw).encode()])
    (sent,) = h.forwarded()
    line = command_line(sent)
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    assert line.count(b"|") == 0  # no perfdata can be forged either
    assert line.startswith(b"[1800000000] PROCESS_SERVICE_CHECK_RESULT;mx1;SMTP-Login;3;UNKNOWN: ")


def test_command_lines_fit_one_atomic_write() -> None:
    result = passive_result("mx1", "SMTP-Login", 2, "CRITICAL: " + "é" * 5000, "", 1.0)
    line = command_line(result)
    assert len(line) <= PIPE_BUF and line.endswith(b"\n")
    line.decode("utf-8")  # never cut inside a character


# -- outbox -----------------------------------------------------------------------------------


def passive(n: int, kind: str = "change") -> PassiveResult:
    return passive_result(f"h{n}", "SMTP-Login", 0, f"OK: {n}", "", float(n), kind)  # type: ignore[arg-type]


def fill(client: redis.Redis, outbox: Outbox, items: list[PassiveResult]) -> None:
    import json

    for item in items:
        client.rpush(outbox.key, json.dumps(item.as_json()))


def test_outbox_gives_a_failed_batch_back_first_and_in_order(client: redis.Redis) -> None:
    outbox = Outbox(client, "t", max_length=100)
    fill(client, outbox, [passive(n) for n in range(5)])
    first = outbox.take(3)
    assert [p.host for p in first.results] == ["h0", "h1", "h2"]
    assert outbox.take(3) == first  # not delivered: the same batch again
    outbox.delivered()
    assert [p.host for p in outbox.take(10).results] == ["h3", "h4"]


def test_a_batch_taken_again_leaves_out_what_was_settled(client: redis.Redis) -> None:
    outbox = Outbox(client, "t", max_length=100)
    fill(client, outbox, [passive(n) for n in range(5)])
    first = outbox.take(5)
    outbox.settle([first.slots[0], first.slots[1], first.slots[3]])
    again = outbox.take(5)  # a crash, or a failure: the rest of the batch, in order
    assert [p.host for p in again.results] == ["h2", "h4"]
    outbox.settle(again.slots)
    assert outbox.take(5).results == []


def test_a_full_outbox_drops_refreshes_first_and_keeps_every_change(client: redis.Redis) -> None:
    outbox = Outbox(client, "t", max_length=4)
    items = [
        passive(0),
        passive(1, "refresh"),
        passive(2),
        passive(3, "refresh"),
        passive(4),
        passive(5),
    ]
    fill(client, outbox, items)
    assert outbox.trim() == 2
    assert [p.host for p in outbox.take(10).results] == ["h0", "h2", "h4", "h5"]
    assert outbox.stats() == {"dropped_refreshes": 2}
    outbox.delivered()
    fill(client, outbox, [passive(n) for n in range(6)])  # only changes: the bound gives way
    assert outbox.trim() == 0 and outbox.length() == 6


def test_one_deliverer_per_outbox(client: redis.Redis) -> None:
    first, second = Outbox(client, "t", max_length=10), Outbox(client, "t", max_length=10)
    assert first.lease.hold(5) and first.lease.hold(5)
    assert not second.lease.hold(5)
    assert first.lease.release() and second.lease.hold(5)


# -- the command file -------------------------------------------------------------------------


class FifoReader(threading.Thread):
    """A reader on a FIFO, as the Engine is: collects the lines written to it."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path, self.lines, self.stop = path, [], threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self.ready.set()
        buffer = b""
        while not self.stop.is_set():
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            self.lines.extend(complete)
            if not chunk:
                time.sleep(0.01)
        os.close(fd)


def test_command_file_without_reader_waits_then_delivers_in_order(
    tmp_path: Path, client: redis.Redis
) -> None:
    fifo = tmp_path / "engine.cmd"
    os.mkfifo(fifo)
    forwarder = CommandFileForwarder(str(fifo))
    with pytest.raises(ForwardError, match="no reader"):
        forwarder.deliver([passive(0)])
    outbox = Outbox(client, "cmd", max_length=1000)
    fill(client, outbox, [passive(n) for n in range(300)])
    stop = threading.Event()
    delivery = Deliverer(outbox, forwarder, stop, backoff=Backoff(base=0.05, cap=0.2))
    delivery.start()
    time.sleep(0.5)  # the Engine is "restarting": nothing is lost meanwhile
    assert outbox.length() == 300
    reader = FifoReader(fifo)
    reader.start()
    deadline = time.monotonic() + 10
    while len(reader.lines) < 300 and time.monotonic() < deadline:
        delivery.wake()
        time.sleep(0.05)
    stop.set()
    delivery.join(5)
    reader.stop.set()
    assert [line.split(b";")[1] for line in reader.lines] == [f"h{n}".encode() for n in range(300)]
    assert all(
        line.startswith(b"[") and b"PROCESS_SERVICE_CHECK_RESULT" in line for line in reader.lines
    )
    assert outbox.length() == 0


def test_results_redis_gives_back_after_their_delivery_are_not_sent_twice(
    tmp_path: Path, client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """A failover to a replica that missed the last writes gives back results already
    delivered (their settling was lost): the deliverer settles them again, unsent."""
    fifo = tmp_path / "engine.cmd"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    reader.start()
    reader.ready.wait(5)
    outbox = Outbox(client, "cmd", max_length=1000)
    sent = [passive(n) for n in range(3)]
    fill(client, outbox, sent)
    stop = threading.Event()
    delivery = Deliverer(outbox, CommandFileForwarder(str(fifo)), stop, backoff=Backoff())
    delivery.start()

    def wait_for(lines: int) -> None:
        deadline = time.monotonic() + 10
        while (len(reader.lines) < lines or outbox.length()) and time.monotonic() < deadline:
            delivery.wake()
            time.sleep(0.02)

    wait_for(3)
    # What the replica still had: the three, as if never delivered; then one new result,
    # and a refresh of the first (the same run, stamped later: a new result).
    refresh = replace(sent[0], check_time=100.0, kind="refresh")
    fill(client, outbox, [*sent, passive(3), refresh])
    wait_for(5)
    time.sleep(0.2)
    stop.set()
    delivery.join(5)
    reader.stop.set()
    assert [line.split(b";")[1] for line in reader.lines] == [b"h0", b"h1", b"h2", b"h3", b"h0"]
    assert reader.lines[-1].startswith(b"[100] ")
    assert outbox.length() == 0
    assert "3 result(s) already delivered came back" in caplog.text


# -- through the result queue -------------------------------------------------------------------------


def test_consumer_service_end_to_end_through_the_result_queue(
    tmp_path: Path, state_url: str, client: redis.Redis
) -> None:
    spool = tmp_path / "commands.txt"
    spool.touch()
    config = write_config(
        tmp_path, state_url, forwarders=[{"type": "command_file", "path": str(spool)}]
    )
    service = ConsumerService(config)
    queue = ResultQueue(client)
    now = time.time()
    for host in ("mx1", "mx2"):
        queue.push(make_result(config, host, at=now))
    runner = threading.Thread(target=service.run, daemon=True)
    runner.start()
    deadline = time.monotonic() + 15
    while spool.read_text().count("\n") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    service.stop()
    runner.join(15)
    lines = spool.read_text().splitlines()
    assert sorted(line.split(";")[1] for line in lines) == ["mx1", "mx2"]
    assert all(
        line.endswith(
            "OK: Response time 0.200 second(s) | 'time'=0.200s;"
            + ("0:1;;;" if ";mx1;" in line else ";;;")
        )
        for line in lines
    )
    assert queue.length() == 0
    assert client.keys("smtp-checks:results:inflight:*") == []  # nothing left in flight


# -- a real Nagios 4 reading our command file -----------------------------------------------------


def test_nagios_reads_what_the_consumer_forwards(tmp_path: Path, state_url: str) -> None:
    from tests.nagios import nagios

    services = [("mx1", "SMTP-Login"), ("mx2", "SMTP-Login")]
    with nagios(services) as engine:
        config = write_config(
            tmp_path,
            state_url,
            forwarders=[{"type": "command_file", "path": str(engine.command_file)}],
        )
        service = ConsumerService(config)
        client = redis.Redis.from_url(state_url)
        now = time.time()
        hostile = make_result(config, "mx2", outcome=Outcome.CREDENTIAL, at=now)
        raw = hostile.model_dump(mode="json")
        raw["detail"] = "x\n[1] PROCESS_SERVICE_CHECK_RESULT;mx1;SMTP-Login;2;forged | 'p'=1"
        ResultQueue(client).push(make_result(config, "mx1", time_=2.5, at=now))
        client.rpush(ResultQueue(client).key, json.dumps(raw))
        runner = threading.Thread(target=service.run, daemon=True)
        runner.start()
        try:
            status = engine.wait_for(
                lambda s: all(s.get(key, {}).get("has_been_checked") == "1" for key in services)
            )
        finally:
            service.stop()
            runner.join(15)
        mx1, mx2 = status[services[0]], status[services[1]]
        assert (mx1["current_state"], mx1["plugin_output"]) == (
            "1",
            "WARNING: Response time 2.500 second(s)",
        )
        assert mx1["performance_data"] == "'time'=2.500s;0:1;;;"
        assert mx1["last_check"] == str(int(now))
        assert mx2["current_state"] == "3"
        assert mx2["plugin_output"].startswith(
            "UNKNOWN: Cannot run check: x [1] PROCESS_SERVICE_CHECK_RESULT"
        )
        assert mx2["performance_data"] == ""
        # The forged command was never a command: mx1 was not set CRITICAL by it.
        assert "forged" not in mx1["plugin_output"]


_FORWARDED = re.compile(r"EXTERNAL COMMAND: PROCESS_SERVICE_CHECK_RESULT;([^;]+);([^;]+);(\d);")


def test_results_piled_up_without_a_consumer_stay_bounded_and_lose_no_state(
    tmp_path: Path, state_url: str, client: redis.Redis
) -> None:
    """100 services, 80 rounds of results (8,000) while no consumer reads: the queue stays
    within three times its bound (compacted, counted), and the consumer that comes back
    gives a real Nagios every state change of every service, in order, ending on the
    newest."""
    from tests.nagios import nagios

    hosts = [f"mx{i:03}" for i in range(100)]
    flapping = set(hosts[::10])  # WARNING and OK by turns, 5 rounds each
    services = [(name, "SMTP-Login") for name in hosts]

    def slow(name: str, round_: int) -> bool:
        return name in flapping and (round_ // 5) % 2 == 1

    with nagios(services) as engine:
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump({
            "broker_url": state_url,
            "sites": {"paris": {}},
            "hosts": [
                {"name": name, "address": "192.0.2.1", "site": "paris",
                 "checks": {"login": {"warning": "1"}}}
                for name in hosts
            ],
            "centreon": {
                "resend_interval": 300,
                "forwarders": [{"type": "command_file", "path": str(engine.command_file)}],
            },
        }))  # fmt: skip
        config = load_config(path)
        bound = backlog_bound(len(hosts))
        queue = ResultQueue(client, bound=bound)
        start = time.time() - 100
        longest = 0
        for round_ in range(80):
            queue.push(*(
                with_status(make_result(
                    config, name, time_=2.5 if slow(name, round_) else 0.2, at=start + round_
                ))
                for name in hosts
            ))  # fmt: skip
            longest = max(longest, int(client.llen(queue.key)))
        assert longest <= 3 * bound < 8_000 / 2
        counters = {k.decode(): int(v) for k, v in client.hgetall("smtp-checks:counters").items()}
        assert counters["results_compacted"] > 8_000 - 3 * bound
        assert "results_changes_dropped" not in counters

        service = ConsumerService(config)
        runner = threading.Thread(target=service.run, daemon=True)
        runner.start()
        expected = {
            (name, "SMTP-Login"): ["0", "1"] * 8 if name in flapping else ["0"] for name in hosts
        }
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                forwarded: dict[tuple[str, str], list[str]] = {}
                for host, svc, state in _FORWARDED.findall(engine.log()):
                    forwarded.setdefault((host, svc), []).append(state)
                if sum(map(len, forwarded.values())) >= sum(map(len, expected.values())):
                    break
                time.sleep(0.2)
        finally:
            service.stop()
            runner.join(15)
        assert forwarded == expected

        def newest_shown(status: dict[tuple[str, str], dict[str, str]]) -> bool:
            return all(
                status.get(key, {}).get("current_state") == states[-1]
                for key, states in expected.items()
            )

        assert newest_shown(engine.wait_for(newest_shown))


def test_a_dead_consumers_batch_is_taken_back_in_order(client: redis.Redis) -> None:
    queue = ResultQueue(client)
    for n in range(5):
        client.rpush(queue.key, f"r{n}".encode())
    assert queue.take("dead", 3, lease=0.2) == [b"r0", b"r1", b"r2"]
    assert queue.reclaim() == 0  # its lease still runs
    time.sleep(0.3)
    assert queue.reclaim() == 3
    assert queue.take("alive", 10, lease=30) == [b"r0", b"r1", b"r2", b"r3", b"r4"]
