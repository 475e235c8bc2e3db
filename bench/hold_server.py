"""A minimal SMTP server that holds every session a fixed time, exactly: the yardstick of the
worker concurrency benchmark.

It greets, answers EHLO, and answers QUIT at `hold` seconds after it accepted the
connection, from a timer on a bare asyncio protocol. aiosmtpd was the first yardstick: under
400 sessions a second its own lateness was 10 to 80 ms at p99, so a perfect client could not
have shown the worker's `time` within 5 ms of the hold. Each session records when it was
accepted, when QUIT was answered and when it closed, so the benchmark can show how late this
server itself was.

Run as a child: `python -m bench.hold_server HOLD` prints its port, then answers "stats"
(JSON) and "reset" lines on stdin; it stops when stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any


class _Session(asyncio.Protocol):
    def __init__(self, hold: float, records: list[dict[str, Any]]) -> None:
        self._hold = hold
        self._records = records
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._record: dict[str, Any] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._accepted = time.monotonic()
        self._record = {"started": time.time(), "replied": None, "ended": None}
        self._records.append(self._record)
        transport.write(b"220 hold.test ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._buffer += data
        while b"\r\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\r\n", 1)
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                self._transport.write(b"250-hold.test\r\n250 8BITMIME\r\n")
            elif verb == b"QUIT":
                loop = asyncio.get_running_loop()
                loop.call_at(self._accepted + self._hold, self._quit)
            else:
                self._transport.write(b"250 2.0.0 OK\r\n")

    def _quit(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._record["replied"] = time.time()
            self._transport.write(b"221 2.0.0 Bye\r\n")
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._record["ended"] = time.time()


async def _serve(hold: float) -> None:
    loop = asyncio.get_running_loop()
    records: list[dict[str, Any]] = []
    server = await loop.create_server(lambda: _Session(hold, records), "127.0.0.1", 0, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    done = asyncio.Event()

    def on_command() -> None:
        line = sys.stdin.readline()
        if not line or line.strip() == "quit":
            done.set()
        elif line.strip() == "reset":
            records.clear()
            print("{}", flush=True)
        elif line.strip() == "stats":
            sessions = [[r["started"], r["ended"], r["replied"]] for r in records]
            print(json.dumps({"sessions": sessions}), flush=True)

    loop.add_reader(sys.stdin.fileno(), on_command)
    await done.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(_serve(float(sys.argv[1])))
