"""`smtp-checks run`: every role on one machine, with no broker server to install.

It starts a private Redis (cli/embedded_redis.py), then the real roles as child
processes, `beat`, one `worker` per site and `consumer`, pointed at that Redis through
SMTP_CHECKS_BROKER_URL and SMTP_CHECKS_REDIS_URL: the same code paths as a distributed
deployment. A role that dies is restarted. Ctrl-C or SIGTERM stops the roles first
(workers give back the checks they had not finished, the consumer finishes its batch), then
Redis, which keeps everything in the data directory for the next start.

`--demo` also starts local SMTP servers (demo/servers.py), writes a config for them, and
shows on the terminal every result as it goes to Centreon.
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
from smtp_checks.cli.live_view import CommandDisplay
from smtp_checks.cli.supervisor import Role, Supervisor
from smtp_checks.shared.config import ENV_PREFIX, load_config


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
        if args.demo:
            config_path = _start_demo(stack, data_dir)
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
        supervisor = Supervisor(
            _roles(config_path, sorted(config.sites), data_dir, args.loglevel), env, sys.stdout
        )
        supervisor.start_all()
        stack.callback(supervisor.stop_all)
        names = ", ".join(role.name for role in supervisor.roles)
        sys.stdout.write(
            f"smtp-checks run: {names} started; {len(config.scheduled_checks())} checks; "
            f"state and logs in {data_dir}; Ctrl-C stops\n"
        )
        sys.stdout.flush()
        deadline = time.monotonic() + args.duration if args.duration else None
        while not stop.wait(0.5):
            supervisor.watch()
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


def _start_demo(stack: ExitStack, data_dir: Path) -> Path:
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
    return config_path
