"""`smtp-checks run`: every role on one machine, with no broker server to install.

It starts a private Redis (cli/embedded_redis.py), then the real roles as child
processes, `beat`, one `worker` per site and `consumer`, pointed at that Redis through
SMTP_CHECKS_BROKER_URL and SMTP_CHECKS_REDIS_URL: the same code paths as a distributed
deployment. A role that dies is restarted. Ctrl-C or SIGTERM stops the roles first
(workers give back the checks they had not finished, the consumer finishes its batch), then
Redis, which keeps everything in the data directory for the next start.

`--demo` also starts local SMTP servers (demo/servers.py), writes a config for them, and
shows on the terminal every result as it goes to Centreon, with a summary line of the
pipeline every few seconds.

`--metrics HOST:PORT` serves every role's Prometheus metrics from one port: the roles write
them to `<data-dir>/metrics` (prometheus-client's multi-process mode) and this process
serves them, with each role's process metrics (shared/metrics.py).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from types import FrameType

import yaml

from smtp_checks.cli.embedded_redis import EmbeddedRedis
from smtp_checks.cli.live_view import CommandDisplay, PipelineSummary
from smtp_checks.cli.metrics_option import add_metrics_option
from smtp_checks.cli.supervisor import Role, Supervisor
from smtp_checks.shared.config import ENV_PREFIX, Config, load_config
from smtp_checks.shared.metrics import MULTIPROCESS_ENV, forget_child, serve_children
from smtp_checks.shared.redis_client import connect


def default_data_dir() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "smtp-checks"


def run_all(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="smtp-checks run", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="the YAML configuration (not needed with --demo)")
    parser.add_argument(
        "--data-dir", type=Path, help=f"state directory (default {default_data_dir()})"
    )
    parser.add_argument("--demo", action="store_true", help="local demo servers and a live view")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--loglevel", default="INFO")
    add_metrics_option(parser)
    args = parser.parse_args(argv)
    if not args.demo and not args.config:
        parser.error("--config is required (or --demo)")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with ExitStack() as stack:
        data_dir = _data_dir(stack, args.data_dir, demo=args.demo)
        config_path = Path(args.config) if args.config else None
        display: CommandDisplay | None = None
        if args.demo:
            config_path, display = _start_demo(stack, data_dir)
        assert config_path is not None
        config = load_config(config_path)
        embedded = EmbeddedRedis(data_dir / "redis")
        embedded.start()
        stack.callback(embedded.stop)
        env = {
            **os.environ,
            f"{ENV_PREFIX}BROKER_URL": embedded.broker_url,
            f"{ENV_PREFIX}REDIS_URL": embedded.redis_url,
        }
        metrics_dir = data_dir / "metrics"
        if args.metrics:
            shutil.rmtree(metrics_dir, ignore_errors=True)  # the counts of an earlier run
            metrics_dir.mkdir()
            env[MULTIPROCESS_ENV] = str(metrics_dir)
        supervisor = Supervisor(
            _roles(config_path, sorted(config.sites), data_dir, args.loglevel),
            env,
            sys.stdout,
            on_exit=lambda pid: forget_child(metrics_dir, pid) if args.metrics else None,
        )
        if args.metrics:
            serve_children(args.metrics, metrics_dir, supervisor.pids)
        supervisor.start_all()
        stack.callback(supervisor.stop_all)
        names = ", ".join(role.name for role in supervisor.roles)
        sys.stdout.write(
            f"smtp-checks run: {names} started; {len(config.scheduled_checks())} checks; "
            f"state and logs in {data_dir}; Ctrl-C stops\n"
        )
        sys.stdout.flush()
        deadline = time.monotonic() + args.duration if args.duration else None
        summary = _demo_summary(stack, config, embedded, display) if display is not None else None
        while not stop.wait(0.5):
            supervisor.watch()
            if summary is not None:
                summary.maybe_show()
            if deadline is not None and time.monotonic() >= deadline:
                break
        sys.stdout.write("smtp-checks run: stopping\n")
        sys.stdout.flush()
    return 0


def _data_dir(stack: ExitStack, chosen: Path | None, *, demo: bool) -> Path:
    """The state directory. A demo without one starts from nothing, every time: a state
    kept from an earlier demo would hide the first results (they would not be changes)."""
    if chosen is None and demo:
        directory = Path(tempfile.mkdtemp(prefix="smtp-checks-demo-"))
        stack.callback(shutil.rmtree, directory, ignore_errors=True)
        return directory
    directory = (chosen or default_data_dir()).expanduser().resolve()
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _roles(config: Path, sites: list[str], data_dir: Path, loglevel: str) -> list[Role]:
    command = [sys.executable, "-m", "smtp_checks.cli.main"]
    common = ["--config", str(config), "--loglevel", loglevel]
    logs = data_dir / "logs"
    roles = [Role("beat", [*command, "beat", *common], logs / "beat.log")]
    roles += [
        Role(
            f"worker({site})",
            [*command, "worker", *common, "--site", site, "--concurrency", "100"],
            logs / f"worker-{site}.log",
        )
        for site in sites
    ]
    roles.append(Role("consumer", [*command, "consumer", *common], logs / "consumer.log"))
    return roles


def _start_demo(stack: ExitStack, data_dir: Path) -> tuple[Path, CommandDisplay]:
    from smtp_checks.demo.servers import DemoServers  # noqa: PLC0415 (aiosmtpd only for the demo)

    servers = DemoServers(data_dir)
    stack.callback(servers.close)
    fifo = data_dir / "centreon.cmd"
    display = CommandDisplay(fifo, sys.stdout)
    display.start()
    stack.callback(display.stop)
    config_path = data_dir / "demo-config.yaml"
    config_path.write_text(yaml.safe_dump(servers.config(fifo), sort_keys=False))
    sys.stdout.write(
        "Demo servers: "
        + ", ".join(f"{s.name} (expect {s.expect})" for s in servers.servers)
        + "\n"
    )
    return config_path, display


def _demo_summary(
    stack: ExitStack, config: Config, embedded: EmbeddedRedis, display: CommandDisplay
) -> PipelineSummary:
    client = connect(embedded.redis_url)
    stack.callback(client.close)
    return PipelineSummary(config, client, display)
