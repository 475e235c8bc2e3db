"""One asyncio event loop per worker process, in a background thread.

Celery tasks are synchronous. Each check task hands its coroutine to this loop and waits for
it, so every check of the process shares one loop: one Redis client, one SSL context cache,
thousands of sessions in flight at the cost of a thread each waiting on a future.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="smtp-checks-loop", daemon=True
        )
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run `coroutine` on the loop and wait for its result (from any other thread)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()


_lock = threading.Lock()
_instance: tuple[int, LoopThread] | None = None


def shared_loop() -> LoopThread:
    """This process's loop, started on first use (and anew in a forked child)."""
    global _instance  # noqa: PLW0603 — one loop per process is the point
    with _lock:
        if _instance is None or _instance[0] != os.getpid():
            _instance = (os.getpid(), LoopThread())
        return _instance[1]
