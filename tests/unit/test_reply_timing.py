"""A reply's time is when its bytes reached the process, not when the probe got to them.

The event loop hands bytes to the session's protocol as soon as it reads them, and the
driver stamps them then; the session may be resumed later, after whatever else the loop had
to do (a thousand other sessions, say). That wait is the worker's, and must not count in the
server's `time`.
"""

from __future__ import annotations

import time

from smtp_checks.shared.probe.replies import ReplyReader


def test_a_reply_is_timed_when_its_last_bytes_arrive() -> None:
    reader = ReplyReader()
    reader.feed(b"250-first line\r\n", time.perf_counter())
    before = time.perf_counter()
    reader.feed(b"250 last line\r\n", time.perf_counter())
    fed = time.perf_counter()
    time.sleep(0.05)  # the loop busy with other sessions before this one reads its reply
    reply = reader.next_reply()
    read_at = time.perf_counter()

    assert reply is not None and reply.code == 250 and reply.lines == ("first line", "last line")
    assert before <= reply.received_at <= fed  # when the last line came in...
    assert read_at - reply.received_at >= 0.05  # ...not when the probe read it


def test_each_reply_gets_its_own_arrival_time() -> None:
    reader = ReplyReader()
    times = []
    for text in (b"220 hello\r\n", b"221 bye\r\n"):
        reader.feed(text, time.perf_counter())
        reply = reader.next_reply()
        assert reply is not None
        times.append(reply.received_at)
        time.sleep(0.001)

    first, second = times
    assert first < second
