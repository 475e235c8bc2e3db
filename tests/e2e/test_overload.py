"""Beyond capacity, with real processes into a real Nagios 4: an overloaded site checks each
service less often and every state stays a real measurement; a consumer that cannot keep
up with its results never reports a published result's run as an orphan.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable

from smtp_checks.shared.keys import KEYS
from tests.e2e.pipeline import Pipeline, host, wait_until
from tests.smtp_servers import ServerPool

LOGIN = {"login": {}}
_FORWARDED_STATE = re.compile(r"EXTERNAL COMMAND: PROCESS_SERVICE_CHECK_RESULT;[^;]+;[^;]+;(\d);")


def queued_per_check(pipeline: Pipeline, queue: str = "checks.paris") -> Counter[str]:
    """How many runs of each check wait on `queue` (kombu's list: a JSON envelope, the
    Celery body in base64, the CheckRequest its one argument)."""
    counts: Counter[str] = Counter()
    for raw in pipeline.client.lrange(queue, 0, -1):
        args, _kwargs, _embed = json.loads(base64.b64decode(json.loads(raw)["body"]))
        counts[args[0]["identity"]["check_id"]] += 1
    return counts


def test_three_times_past_capacity_every_service_stays_real_and_ok(
    pipelines: Callable[..., Pipeline], server_pool: ServerPool
) -> None:
    # 30 checks every 3 s (10 a second) against servers that take 0.3 s, one worker running
    # one check at a time (3.3 a second): a third of what the config asks for.
    servers = [server_pool.smtp(banner_delay=0.3) for _ in range(3)]
    hosts = [host(f"p{i:02}", "paris", servers[i % 3].port, LOGIN) for i in range(30)]
    pipeline = pipelines(
        hosts,
        workers={"paris": ["paris-1"]},
        interval=3,
        timeout=2,
        resend_interval=30,  # starvation, if any, would show after 30 s without a result
        concurrency=1,
    )
    pipeline.start()
    deepest: Counter[str] = Counter()
    ends_at = time.monotonic() + 45
    while time.monotonic() < ends_at:
        for check, count in queued_per_check(pipeline).items():
            deepest[check] = max(deepest[check], count)
        time.sleep(0.25)
    assert deepest, "nothing was ever queued"
    assert max(deepest.values()) == 1, deepest.most_common(3)  # one pending run per check
    skipped = int(pipeline.client.hget(KEYS.counters, "skipped_slots") or 0)
    assert skipped > 100  # about two slots of three were skipped for each check
    states = Counter(_FORWARDED_STATE.findall(pipeline.nagios.log()))
    assert states["3"] == 0 and states["0"] >= 30, states
    status = pipeline.nagios.services()
    assert all(block["current_state"] == "0" for block in status.values()), status
    # Every service was measured again and again, less often than asked, never given up on.
    assert all(int(block["last_check"]) > time.time() - 20 for block in status.values())
    assert "orphaned" not in pipeline.log("consumer")
    assert "no result for" not in pipeline.log("consumer")


class DutyCycle(threading.Thread):
    """Hold a process stopped most of the time (SIGSTOP, SIGCONT): a consumer with a
    fraction of a CPU, whose results pile up while it sleeps."""

    def __init__(self, pid: int, *, stopped: float, running: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.stopped, self.running = pid, stopped, running
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            os.kill(self.pid, signal.SIGSTOP)
            self.done.wait(self.stopped)
            os.kill(self.pid, signal.SIGCONT)
            self.done.wait(self.running)

    def finish(self) -> None:
        self.done.set()
        self.join()
        os.kill(self.pid, signal.SIGCONT)


def test_a_saturated_consumer_reports_no_orphan_for_a_published_result(
    pipelines: Callable[..., Pipeline], server_pool: ServerPool
) -> None:
    server = server_pool.smtp()
    hosts = [host(f"h{i:03}", "paris" if i % 2 else "lyon", server.port, LOGIN) for i in range(100)]
    # 100 results a second. A run is due back 1 s (timeout) + 2 s (grace) after a worker took
    # it: far less than the consumer sleeps at a stretch (8 s), so it wakes to a backlog
    # larger than a batch (500), of results older than that.
    pipeline = pipelines(hosts, interval=1, timeout=1, orphan_grace=2, resend_interval=60)
    pipeline.start()
    consumer = pipeline.roles["consumer"].process
    assert consumer is not None
    throttle = DutyCycle(consumer.pid, stopped=8.0, running=0.5)
    throttle.start()
    try:
        wait_until(lambda: pipeline.results_waiting() > 600, 30, "a backlog of results")
        time.sleep(20)
    finally:
        throttle.finish()
    runs = pipeline.settle(timeout=60)
    pipeline.stop("consumer")
    outcomes = pipeline.outcomes(list(runs))
    published = {run for run, (results, _) in outcomes.items() if results}
    reported = {run for run, (_, orphans) in outcomes.items() if orphans}
    assert len(published) == len(runs) > 2000
    assert not reported & published
    assert not reported
    (counts,) = pipeline.consumer_counts()
    assert counts.get("old", 0) == 0 and counts.get("orphan", 0) == 0, counts
