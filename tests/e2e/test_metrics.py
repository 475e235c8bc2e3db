"""Prometheus metrics of real role processes (`--metrics HOST:PORT`), scraped as Prometheus
does: the counters move with the checks that ran and agree with what the workers published
and with what Nagios read from the command file; the Grafana dashboard reads only metrics
the roles really export."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from tests.e2e.pipeline import Pipeline, free_port, host, wait_until
from tests.metrics_scrape import Scrape, dashboard_metric_names, scrape
from tests.smtp_servers import ServerPool

LOGIN = {"login": {}}


def _changes_by_service(commands: list[tuple[int, str]]) -> tuple[Counter[str], int]:
    """From what Nagios read: by host, the lines whose status differs from the service's
    previous one (its first line included), and how many lines repeat a status."""
    last: dict[tuple[str, str], str] = {}
    changes: Counter[str] = Counter()
    repeats = 0
    for _, arguments in commands:
        host_name, service, code, _ = arguments.split(";", 3)
        if last.get((host_name, service)) != code:
            changes[host_name] += 1
        else:
            repeats += 1
        last[(host_name, service)] = code
    return changes, repeats


def test_role_metrics_agree_with_the_results_and_nagios_and_cover_the_dashboard(
    pipelines: Callable[..., Pipeline], server_pool: ServerPool
) -> None:
    server = server_pool.smtp()
    hosts = [
        host("p-ok-1", "paris", server.port, LOGIN),
        host("p-ok-2", "paris", server.port, LOGIN),
        host("l-down", "lyon", free_port(), LOGIN),  # nothing listens: CRITICAL, refused
    ]
    pipeline = pipelines(hosts, metrics=True)
    pipeline.start()
    pipeline.wait_for_services(
        lambda service: service.get("has_been_checked") == "1", 30, "every service checked"
    )
    wait_until(
        lambda: len(pipeline.nagios.commands()) > len(pipeline.services), 30, "a refresh sent"
    )
    # The beat counted every run it enqueued (compared between two of its rounds).
    wait_until(
        lambda: (
            scrape(pipeline.metrics_url("beat")).value("smtp_checks_runs_enqueued_total")
            == len(pipeline.runs())
        ),
        10,
        "the beat's count of runs enqueued matches its log",
    )
    beat = scrape(pipeline.metrics_url("beat"))
    assert beat.value("smtp_checks_beat_leader") == 1
    assert beat.value("smtp_checks_enqueue_lateness_seconds_count") == beat.value(
        "smtp_checks_runs_enqueued_total"
    )
    pipeline.settle()
    nagios_forwarder = f"command_file:{pipeline.nagios.command_file}"

    def consumer_caught_up() -> tuple[Scrape, list[tuple[int, str]]] | None:
        # Refreshes go on: a scrape between two identical readings of what Nagios read.
        before = pipeline.nagios.commands()
        found = scrape(pipeline.metrics_url("consumer"))
        if pipeline.nagios.commands() != before:
            return None
        delivered = found.value("smtp_checks_forwarder_delivered_total")
        return (found, before) if delivered == len(before) else None

    consumer, commands = wait_until(consumer_caught_up, 30, "Nagios read all that was delivered")
    workers = {name: scrape(pipeline.metrics_url(name)) for name in pipeline.workers()}
    published = pipeline.published()

    # The workers finished what they published, by site and outcome.
    outcomes = Counter((result.site, result.outcome.value) for result in published)
    finished = Counter(
        {
            (site, outcome): sum(
                w.value("smtp_checks_checks_finished_total", site=site, outcome=outcome)
                for w in workers.values()
            )
            for site, outcome in outcomes
        }
    )
    assert finished == outcomes, (finished, outcomes)
    total = sum(w.value("smtp_checks_checks_finished_total") for w in workers.values())
    assert total == len(published)
    assert outcomes[("lyon", "refused")] > 0 and outcomes[("paris", "success")] > 0
    started = sum(w.value("smtp_checks_checks_started_total") for w in workers.values())
    assert started == len(published)
    timed = sum(w.value("smtp_checks_probe_time_seconds_count") for w in workers.values())
    assert timed == len(published)  # every check reached its server (or its refusal)
    assert workers["paris-1"].value("smtp_checks_checks_in_flight") == 0
    # The consumer read them all, and rendered them as the workers did.
    statuses = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}
    by_status = Counter((result.site, statuses[result.status or 0]) for result in published)
    for (site, status), count in by_status.items():
        assert consumer.value("smtp_checks_results_total", site=site, status=status) == count
    assert consumer.value("smtp_checks_results_total") == len(published)
    # What went to Centreon: each line Nagios read is a change or a refresh, counted so.
    changes, repeats = _changes_by_service(commands)
    assert consumer.value("smtp_checks_forwarder_delivered_total", forwarder=nagios_forwarder) == (
        len(commands)
    )
    assert (
        consumer.value("smtp_checks_state_changes_total", site="paris")
        == changes["p-ok-1"] + (changes["p-ok-2"])
    )
    assert consumer.value("smtp_checks_state_changes_total", site="lyon") == changes["l-down"]
    assert consumer.value("smtp_checks_refreshes_total") == repeats
    assert consumer.value("smtp_checks_delivery_latency_seconds_count") == len(commands)
    # Every role says what it is, and its process's figures.
    for role, scraped in [("beat", beat), ("consumer", consumer), ("worker", workers["lyon-1"])]:
        assert scraped.labels("smtp_checks_build_info", "role") == {role}
        assert scraped.value("process_cpu_seconds_total") > 0
    # The dashboard reads nothing the roles do not export.
    exported = set().union(beat.names, consumer.names, *(w.names for w in workers.values()))
    missing = sorted(dashboard_metric_names() - exported)
    assert not missing, f"the dashboard queries metrics no role exports: {missing}"
