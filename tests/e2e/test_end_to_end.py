"""End to end: Redis, the beat, workers of two sites, the consumer and a real Nagios 4 core,
all as real processes, against local SMTP servers.

What is counted: every run the beat enqueued (its DEBUG log names each run id), every
result a worker published (on the result queue, and in Redis's append-only file), every
orphan the consumer reported (its log), every command Nagios read (its log), and what
Nagios shows in status.dat.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from smtp_checks.consumer.processor import passive_result
from smtp_checks.shared.keys import KEYS
from smtp_checks.shared.messages import CheckResult
from smtp_checks.shared.output.options import OutputOptions
from smtp_checks.shared.result_output import render_result, result_output
from tests.e2e.pipeline import Pipeline, host, wait_until
from tests.smtp_servers import ServerPool, refused_port

WORKERS = {"paris": ["paris-1", "paris-2"], "lyon": ["lyon-1", "lyon-2"]}
MESSAGE = {"from": "monitor@example.com", "to": "probe@example.com"}

# (host, service) -> (Nagios state, the start of its output)
EXPECTED = {
    ("p-ok", "SMTP-Login"): ("0", "OK: Response time "),
    ("p-ok", "SMTP-Message"): ("0", "OK: Message sent - Response time "),
    ("p-rcpt", "SMTP-Message"): (
        "2",
        "CRITICAL: Unable to send message: RCPT TO <probe@example.com> refused: 550 5.1.1 ",
    ),
    ("l-slow", "SMTP-Login"): ("1", "WARNING: Response time 0.3"),
    ("l-down", "SMTP-Login"): ("2", "CRITICAL: Unable to connect to SMTP: Connection refused"),
}


def two_site_hosts(server_pool: ServerPool) -> list[dict[str, Any]]:
    ok = server_pool.smtp()
    rcpt = server_pool.smtp(rcpt_reply="550 5.1.1 no such user here")
    slow = server_pool.smtp(banner_delay=0.3)
    return [
        host("p-ok", "paris", ok.port, {"login": {}, "message": MESSAGE}),
        host("p-rcpt", "paris", rcpt.port, {"message": MESSAGE}),
        host("l-slow", "lyon", slow.port, {"login": {"warning": "0.2", "critical": "0.9"}}),
        host("l-down", "lyon", refused_port(), {"login": {}}),
    ]


def test_each_site_runs_only_its_checks_and_every_run_reaches_nagios_once(
    pipelines: Callable[..., Pipeline], server_pool: ServerPool
) -> None:
    pipeline = pipelines(two_site_hosts(server_pool), workers=WORKERS)
    assert set(pipeline.services) == set(EXPECTED)
    # Phase 1, no consumer yet: results wait on the result queue, where every one can be read.
    pipeline.start(roles=["beat", *WORKERS["paris"], *WORKERS["lyon"]])
    wait_until(
        lambda: (
            min(Counter(run.check_id for run in pipeline.runs().values()).values(), default=0) >= 3
            and len({run.check_id for run in pipeline.runs().values()}) == len(EXPECTED)
        ),
        30,
        "three runs of every check enqueued",
    )
    pipeline.stop("beat")
    runs = pipeline.runs()
    wait_until(
        lambda: pipeline.client.llen(KEYS.results) >= len(runs),
        20,
        f"a result for each of the {len(runs)} runs",
    )
    results = [
        CheckResult.model_validate_json(raw) for raw in pipeline.client.lrange(KEYS.results, 0, -1)
    ]
    # Exactly one result per enqueued run: none missing, none doubled, none unexpected.
    assert Counter(r.run_id for r in results) == Counter(list(runs))
    # Each site's checks ran on that site's workers only, and each result is its run's.
    for result in results:
        run = runs[result.run_id]
        assert result.check_id == run.check_id
        assert run.queue == f"checks.{result.site}"
        assert result.worker in {f"{name}@e2e" for name in WORKERS[result.site]}, result
    assert {r.site for r in results} == {"paris", "lyon"}

    # Phase 2: the consumer records every result once and forwards to Nagios.
    pipeline.start_role("consumer")
    wait_until(
        lambda: not pipeline.outstanding() and pipeline.results_waiting() == 0,
        20,
        "every result recorded, nothing outstanding",
    )
    outcomes = pipeline.outcomes(list(runs))
    assert all(outcome == (1, 0) for outcome in outcomes.values()), outcomes
    # What each service's results say, in the order they ended. (A check's first run can be
    # a stale UNKNOWN: at start the beat owes each check its latest slot, which may be
    # about to end.)
    rendered: dict[tuple[str, str], list[tuple[int, str, str]]] = {}
    for result in sorted(results, key=lambda r: r.ended_at):
        text = render_result(result)
        options = OutputOptions(mode=result.mode.value)
        passive = passive_result(result.identity, result_output(result), options, 0.0)
        rendered.setdefault((result.host, result.service), []).append(
            (text.exit_code, passive.output, passive.perfdata)
        )
    status = pipeline.wait_for_services(
        lambda block: block.get("has_been_checked") == "1", 15, "every service checked"
    )
    for key, (state, start) in EXPECTED.items():
        shown = status[key]
        assert (shown["current_state"], shown["plugin_output"][: len(start)]) == (state, start)
        # Word for word one of that service's results, as the plugin would print it (but
        # for the trailing space of the plugin's failure outputs, which Nagios strips).
        outputs = [(output.rstrip(), perfdata) for _, output, perfdata in rendered[key]]
        assert (shown["plugin_output"], shown["performance_data"]) in outputs
    # Nagios read each state change, in order, word for word: the first result of each
    # service and every later one whose status differs from the one before.
    changes = {
        key: [
            f"{key[0]};{key[1]};{code};{output} | {perfdata}".removesuffix(" | ").rstrip()
            for i, (code, output, perfdata) in enumerate(outputs)
            if i == 0 or code != outputs[i - 1][0]
        ]
        for key, outputs in rendered.items()
    }
    expected_changes = sum(len(lines) for lines in changes.values())
    wait_until(
        lambda: len(pipeline.nagios.commands()) >= expected_changes,
        10,
        f"Nagios read the {expected_changes} state changes",
    )
    read: dict[tuple[str, str], list[str]] = {}
    for _, command in pipeline.nagios.commands():
        name, service, _ = command.split(";", 2)
        read.setdefault((name, service), []).append(command)
    for key, lines in changes.items():
        assert read[key][: len(lines)] == lines
    outbox = pipeline.outbox_key(pipeline.nagios.command_file)
    wait_until(lambda: pipeline.client.llen(outbox) == 0, 10, "the outbox emptied")
    assert pipeline.stop("consumer") == 0
    (counts,) = pipeline.consumer_counts()
    # Every result recorded once: a change or the same state, nothing twice or out of order.
    assert counts["change"] == expected_changes
    assert counts["change"] + counts["same"] == len(runs)
    assert not {"duplicate", "old", "orphan", "invalid", "unknown_service"} & set(counts)


def test_live_pipeline_accounts_for_every_run_and_forwards_each_result_once(
    pipelines: Callable[..., Pipeline], server_pool: ServerPool
) -> None:
    pipeline = pipelines(two_site_hosts(server_pool), workers=WORKERS, resend_interval=3)
    pipeline.start()
    expected_states(pipeline, 20)
    first = pipeline.nagios.last_checks()
    # A few intervals with everything running, refreshes included (resend_interval 3 s):
    # three runs of every check at least (the last check can move on by a refresh alone).
    wait_until(
        lambda: (
            all(pipeline.nagios.last_checks().get(key, 0) >= first[key] + 3 for key in EXPECTED)
            and min(Counter(r.check_id for r in pipeline.runs().values()).values(), default=0) >= 3
        ),
        20,
        "every service's last check moved on by a resend interval, every check run 3 times",
    )
    runs = pipeline.settle()
    assert len(runs) >= 3 * len(EXPECTED)
    # Every run the beat enqueued came back exactly once, as a result (no orphan).
    outcomes = pipeline.outcomes(list(runs))
    wrong = {run: outcome for run, outcome in outcomes.items() if outcome != (1, 0)}
    assert not wrong, f"runs without exactly one result (results, orphans): {wrong}"
    assert len(pipeline.published()) == len(runs)
    outbox = pipeline.outbox_key(pipeline.nagios.command_file)
    wait_until(lambda: pipeline.client.llen(outbox) == 0, 10, "the outbox emptied")
    assert pipeline.stop("consumer") == 0
    (counts,) = pipeline.consumer_counts()
    assert counts["change"] >= len(EXPECTED)
    assert counts["refresh"] >= len(EXPECTED)
    assert not {"duplicate", "old", "orphan", "invalid", "unknown_service"} & set(counts)
    # Everything forwarded reached Nagios exactly once: what the consumer queued for it,
    # minus whatever was still waiting when it stopped.
    forwarded = (
        counts["change"] + counts["refresh"] - len(pipeline.outbox(pipeline.nagios.command_file))
    )
    wait_until(
        lambda: len(pipeline.nagios.commands()) >= forwarded, 10, f"{forwarded} commands read"
    )
    assert len(pipeline.nagios.commands()) == forwarded
    expected_states(pipeline, 1)


def expected_states(pipeline: Pipeline, timeout: float) -> None:
    """Wait until Nagios shows every service of EXPECTED in its expected state and output."""
    for key, (state, start) in EXPECTED.items():
        pipeline.wait_for_services(
            lambda block, state=state, start=start: (
                block.get("current_state") == state
                and block.get("plugin_output", "").startswith(start)
            ),
            timeout,
            f"{key} in state {state}",
            services=[key],
        )
