"""`smtp-checks run`: every role on one machine, with no broker server to install.

It starts a private Redis (shared/cli/embedded_redis.py), then the real roles as child
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
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TextIO

import yaml

from smtp_checks.cli.embedded_redis import EmbeddedRedis, EmbeddedRedisError
from smtp_checks.shared.config import ENV_PREFIX, ConfigError, load_config

_STATUS = {"0": "OK", "1": "WARNING", "2": "CRITICAL", "3": "UNKNOWN"}
_COLOUR = {"0": "32", "1": "33", "2": "31", "3": "35"}
_STOP_TIMEOUT = 15.0  # seconds the roles get to stop cleanly before they are killed


def default_data_dir() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "smtp-checks"


@dataclass
class Role:
    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    restart_at: float = 0.0
    started: list[float] = field(default_factory=list)


class Supervisor:
    """Starts the roles, restarts one that dies (with backoff), stops them all."""

    def __init__(self, roles: list[Role], env: dict[str, str], out: TextIO) -> None:
        self.roles = roles
        self._env = env
        self._out = out
        self._stopping = False

    def start(self, role: Role) -> None:
        role.log.parent.mkdir(parents=True, exist_ok=True)
        with role.log.open("ab") as log:
            role.process = subprocess.Popen(
                role.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self._env, start_new_session=True,  # Ctrl-C goes to us, not to them
            )  # fmt: skip

    def start_all(self) -> None:
        for role in self.roles:
            self.start(role)

    def watch(self) -> None:
        """Restart roles that exited, at most every 30 s each."""
        now = time.monotonic()
        for role in self.roles:
            if self._stopping or role.process is None or role.process.poll() is None:
                continue
            if role.restart_at == 0.0:
                delay = min(30.0, 2.0**role.restarts)
                role.restart_at = now + delay
                self._out.write(
                    f"smtp-checks run: {role.name} exited ({role.process.returncode}); "
                    f"restarting in {delay:.0f} s (log: {role.log})\n"
                )
            elif now >= role.restart_at:
                role.restarts += 1
                role.restart_at = 0.0
                self.start(role)

    def stop_all(self) -> None:
        self._stopping = True
        running = [r.process for r in self.roles if r.process and r.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + _STOP_TIMEOUT
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class CommandDisplay(threading.Thread):
    """Reads the demo's command file (a FIFO) and prints each result, as Centreon gets it."""

    def __init__(self, fifo: Path, out: TextIO) -> None:
        super().__init__(name="display", daemon=True)
        self.fifo = fifo
        self._out = out
        self._colour = out.isatty()
        self._done = threading.Event()
        if not fifo.exists():
            os.mkfifo(fifo, 0o600)
        self._fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)

    def run(self) -> None:
        buffer = b""
        while not self._done.is_set():
            ready, _, _ = select.select([self._fd], [], [], 0.2)
            if not ready:
                continue
            chunk = os.read(self._fd, 65536)
            if not chunk:  # no writer at the moment
                time.sleep(0.1)
                continue
            *lines, buffer = (buffer + chunk).split(b"\n")
            for line in lines:
                self._show(line.decode("utf-8", errors="replace"))

    def _show(self, line: str) -> None:
        stamp, _, command = line.partition("] ")
        fields = command.split(";", 4)
        if len(fields) != 5:
            return
        _, host, service, code, output = fields
        when = time.strftime("%H:%M:%S", time.localtime(int(stamp.lstrip("[") or 0)))
        status = _STATUS.get(code, code)
        if self._colour:
            status = f"\033[{_COLOUR.get(code, '0')}m{status:<8}\033[0m"
        self._out.write(f"{when}  {host:<12} {service:<13} {status:<8} {output}\n")
        self._out.flush()

    def stop(self) -> None:
        self._done.set()
        self.join(2)
        os.close(self._fd)


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
        try:
            config = load_config(config_path)
        except ConfigError as error:
            sys.stderr.write(f"{error}\n")
            return 2
        embedded = EmbeddedRedis(data_dir / "redis")
        try:
            embedded.start()
        except EmbeddedRedisError as error:
            sys.stderr.write(f"smtp-checks run: {error}\n")
            return 2
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
