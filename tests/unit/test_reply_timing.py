"""A reply's time is when its bytes reached the process, not when the probe got to them.

The event loop hands bytes to the connection's reader as soon as it reads them; the probe's
coroutine runs later, after whatever else the loop had to do (a thousand other sessions,
say). That wait is the worker's, and must not count in the server's `time`.
"""

from __future__ import annotations

import asyncio
import time

from smtp_checks.shared.probe.connection import SmtpConnection, TimedStreamReader


def test_a_reply_is_timed_when_its_last_bytes_arrive() -> None:
    async def scenario() -> tuple[float, float, float | None, float]:
        reader = TimedStreamReader()
        connection = SmtpConnection(reader, writer=None)  # type: ignore[arg-type]  # reads only
        reader.feed_data(b"250-first line\r\n")
        before = time.perf_counter()
        reader.feed_data(b"250 last line\r\n")
        fed = time.perf_counter()
        time.sleep(0.05)  # the loop busy with other sessions before this one reads its reply
        reply = await connection.read_reply()
        assert reply.code == 250 and reply.lines == ("first line", "last line")
        return before, fed, connection.reply_received_at, time.perf_counter()

    before, fed, received_at, read_at = asyncio.run(scenario())

    assert received_at is not None
    assert before <= received_at <= fed  # when the last line came in...
    assert read_at - received_at >= 0.05  # ...not when the probe read it


def test_each_reply_gets_its_own_arrival_time() -> None:
    async def scenario() -> list[float | None]:
        reader = TimedStreamReader()
        connection = SmtpConnection(reader, writer=None)  # type: ignore[arg-type]
        times = []
        for text in (b"220 hello\r\n", b"221 bye\r\n"):
            reader.feed_data(text)
            await connection.read_reply()
            times.append(connection.reply_received_at)
        return times

    first, second = asyncio.run(scenario())

    assert first is not None and second is not None and first < second
