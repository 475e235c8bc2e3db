"""`smtp-checks status` against a live pipeline (real processes, its own Redis): OK while
every role runs, CRITICAL naming the site whose only worker was killed, UNKNOWN once Redis
is gone."""

from __future__ import annotations

from collections.abc import Callable

from tests.e2e.pipeline import Pipeline, host, wait_until
from tests.smtp_servers import ServerPool

LOGIN = {"login": {}}


def test_status_is_ok_then_critical_for_a_dead_site_then_unknown_without_redis(
    pipelines: Callable[..., Pipeline], server_pool: ServerPool
) -> None:
    server = server_pool.smtp()
    hosts = [host("p-ok", "paris", server.port, LOGIN), host("l-ok", "lyon", server.port, LOGIN)]
    pipeline = pipelines(hosts)
    pipeline.start()
    code, output = wait_until(
        lambda: (found := pipeline.status())[0] == 0 and found,
        30,
        "status OK once every role has beaten",
    )
    first, *details = output.splitlines()
    assert first.startswith("OK: 2 sites, 2 workers, "), output
    assert "'workers_paris'=1;;;0;" in first and "'workers_lyon'=1;;;0;" in first, first
    assert any(line.startswith("beat: ") and " leads" in line for line in details), output

    pipeline.kill("lyon-1")
    code, output = wait_until(
        lambda: (found := pipeline.status())[0] == 2 and found, 30, "status CRITICAL"
    )
    assert output.startswith("CRITICAL: site lyon has 1 check(s) and no live worker | "), output

    pipeline.redis.stop()
    code, output = pipeline.status()
    assert code == 3, output
    assert output.startswith("UNKNOWN: cannot read the pipeline's state in Redis: "), output


def test_self_check_services_reach_nagios_and_turn_critical_for_a_dead_site(
    pipelines: Callable[..., Pipeline], server_pool: ServerPool
) -> None:
    server = server_pool.smtp()
    hosts = [host("p-ok", "paris", server.port, LOGIN), host("l-ok", "lyon", server.port, LOGIN)]
    # A long interval: once the first runs are in, no check of lyon is due while it dies.
    pipeline = pipelines(hosts, self_check="smtp-checks", interval=600, resend_interval=600)
    pipeline.start()
    states = pipeline.nagios.wait_for(
        lambda services: all(
            services.get(("smtp-checks", name), {}).get("has_been_checked") == "1"
            for name in ("Site-paris", "Site-lyon", "Pipeline")
        ),
        40,
    )
    assert states[("smtp-checks", "Site-lyon")]["plugin_output"].startswith(
        "OK: 1 worker(s) (0 of 50 in flight), "
    ), states[("smtp-checks", "Site-lyon")]
    assert states[("smtp-checks", "Pipeline")]["plugin_output"] == "OK: 2 sites, 2 workers, " + (
        "0 queued, outboxes empty"
    )
    assert "'workers_lyon'=1;;;0;" in states[("smtp-checks", "Pipeline")]["performance_data"]

    pipeline.kill("lyon-1")
    states = pipeline.nagios.wait_for(
        lambda services: services.get(("smtp-checks", "Site-lyon"), {}).get("current_state") == "2",
        40,
    )
    site = states[("smtp-checks", "Site-lyon")]
    assert site["plugin_output"] == "CRITICAL: site lyon has 1 check(s) and no live worker"
    assert site["performance_data"] == "'queued'=0;;;0; 'workers'=0;;;0; 'checks_per_minute'=0;;;0;"
    assert states[("smtp-checks", "Site-paris")]["current_state"] == "0"
    pipeline_state = states[("smtp-checks", "Pipeline")]
    assert pipeline_state["current_state"] == "2", pipeline_state
    assert pipeline_state["plugin_output"].startswith("CRITICAL: site lyon has 1 check(s)")
