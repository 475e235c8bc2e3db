"""The deployment files: systemd units that systemd accepts, compose files (plain Redis, and
Redis Sentinel) that run the roles we have with the config we ship."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from smtp_checks.cli.main import USAGE
from smtp_checks.shared.config import load_config
from smtp_checks.shared.redis_client import state_redis

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))


def test_the_three_units_exist() -> None:
    assert {unit.name for unit in UNITS} == {
        "smtp-checks-beat.service",
        "smtp-checks-consumer.service",
        "smtp-checks-worker@.service",
    }


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not available")
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    smtp_checks = shutil.which("smtp-checks", path=str(Path(sys.executable).parent))
    assert smtp_checks, "the smtp-checks executable must be installed (make test does it)"
    names = []
    for unit in UNITS:
        text = unit.read_text().replace("/opt/smtp-checks/bin/smtp-checks", smtp_checks)
        name = unit.name.replace("@.service", "@paris.service")
        (tmp_path / name).write_text(text)
        names.append(str(tmp_path / name))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names],
        capture_output=True,
        text=True,
        check=False,
    )
    # verify exits 0 on mere warnings (an unknown key, a bad value): any output is a defect.
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_units_are_hardened(unit: Path) -> None:
    text = unit.read_text()
    for setting in (
        "User=smtp-checks",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
    ):
        assert setting in text  # fmt: skip


def test_compose_runs_existing_roles_with_the_shipped_config() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "beat", "worker-paris", "worker-lyon", "consumer"}
    for name, service in services.items():
        if name == "redis":
            assert "noeviction" in service["command"]
            continue
        command = service["command"]
        assert f"  {command[0]} " in USAGE  # a real sub-command
        config = command[command.index("--config") + 1]
        volume = next(v for v in service["volumes"] if v.endswith(f":{config}:ro"))
        assert (DEPLOY / volume.split(":")[0]).exists()
    assert services["beat"]["deploy"]["replicas"] == 2


def test_the_sentinel_compose_points_every_role_at_the_sentinels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compose = yaml.safe_load((DEPLOY / "compose-sentinel.yaml").read_text())
    services = compose["services"]
    sentinels = sorted(name for name in services if name.startswith("sentinel-"))
    assert len(sentinels) == 3 and {"redis-a", "redis-b"} <= set(services)
    script = services["sentinel-1"]["command"][-1]
    assert "sentinel monitor smtp-checks redis-a 6379 2" in script
    assert "--replicaof" in services["redis-b"]["command"]
    for name in ("beat", "worker-paris", "worker-lyon", "consumer"):
        environment = services[name]["environment"]
        url = environment["SMTP_CHECKS_BROKER_URL"]
        assert [part.split("//")[1].split(":")[0] for part in url.split(";")] == sentinels
        monkeypatch.setenv("SMTP_CHECKS_BROKER_URL", url)
        monkeypatch.setenv(
            "SMTP_CHECKS_SENTINEL_MASTER", environment["SMTP_CHECKS_SENTINEL_MASTER"]
        )
        config = load_config(DEPLOY / "examples" / "multi-site.yaml")
        address = state_redis(config)
        assert address is not None and address.behind_sentinel
        assert address.sentinel_master == "smtp-checks"
