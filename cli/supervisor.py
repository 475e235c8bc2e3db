"""The roles of `smtp-checks run` as child processes: started, restarted with backoff when
one dies, stopped together (cleanly, then killed past a timeout)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from smtp_checks.shared.backoff import Backoff

_STOP_TIMEOUT = 15.0  # seconds the roles get to stop cleanly before they are killed


@dataclass
class Role:
    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    restart_at: float = 0.0
    # Restarting a role that dies at once, again and again, waits longer each time.
    backoff: Backoff = field(default_factory=lambda: Backoff(base=1.0, cap=30.0, floor=0.5))


class Supervisor:
    """Starts the roles, restarts one that dies (with backoff), stops them all."""

    def __init__(
        self,
        roles: list[Role],
        env: dict[str, str],
        out: TextIO,
        *,
        on_exit: Callable[[int], None] = lambda pid: None,
    ) -> None:
        """`on_exit(pid)`: a role's process has exited (and will be started anew)."""
        self.roles = roles
        self._env = env
        self._out = out
        self._on_exit = on_exit
        self._stopping = False

    def pids(self) -> dict[str, int]:
        """The process id of each running role, by role name."""
        return {
            role.name: role.process.pid
            for role in self.roles
            if role.process is not None and role.process.poll() is None
        }

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
                self._on_exit(role.process.pid)
                delay = role.backoff.next_delay()
                role.restart_at = now + delay
                self._out.write(
                    f"smtp-checks run: {role.name} exited ({role.process.returncode}); "
                    f"restarting in {delay:.0f} s (log: {role.log})\n"
                )
            elif now >= role.restart_at:
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
