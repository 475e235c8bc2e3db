"""Centreon Engine's (or Nagios's) external command file: one PROCESS_SERVICE_CHECK_RESULT
line per result, written to the FIFO the Engine reads.

Each write is at most PIPE_BUF (4096) bytes and holds whole lines only, so commands from
several writers never interleave. The FIFO is opened without blocking: when the Engine is
restarting there is no reader, the open fails with ENXIO, and the batch waits in the outbox
instead of blocking the consumer.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import stat

from smtp_checks.consumer.forwarders.base import (
    ForwardError,
    PassiveResult,
    Settled,
    ignore_settled,
)
from smtp_checks.consumer.forwarders.engine_text import Reader, for_engine

log = logging.getLogger("smtp_checks.forwarder.command_file")

# Why 4096 when the Engine would read lines of up to 8190 bytes (an fgets into an 8192-byte
# buffer): a write to a FIFO is atomic only up to PIPE_BUF (4096 on Linux), and Centreon's own
# daemons (centcore, Gorgone) write to the same FIFO. A longer line could be interleaved with
# theirs, and both commands would be lost.
PIPE_BUF = 4096
_WRITE_WAIT = 5.0  # seconds to wait for room in a full pipe before giving up for now


def command_line(result: PassiveResult, reader: Reader = Reader.CENTREON) -> bytes:
    """`[t] PROCESS_SERVICE_CHECK_RESULT;host;service;code;output|perfdata\\n`, one line that
    fits one atomic write, its text written so that `reader` shows it as sent. Names and
    text come sanitised; this is the last guard. A line too long loses perfdata items from
    the end, whole, then the end of the output."""
    fields = [_field(result.host), _field(result.service), str(result.status)]
    prefix = f"[{int(result.check_time)}] PROCESS_SERVICE_CHECK_RESULT;{';'.join(fields)};"
    output = for_engine(_one_line(result.output), reader).encode()
    items = [for_engine(_one_line(item), reader).encode() for item in result.perfdata_items]
    room = PIPE_BUF - len(prefix.encode()) - 1  # the newline
    while items and len(output) + sum(len(item) + 1 for item in items) + 2 > room:
        items.pop()
    text = output + (b" | " + b" ".join(items) if items else b"")
    return prefix.encode() + _cut(text, room) + b"\n"


def _cut(text: bytes, room: int) -> bytes:
    """At most `room` bytes of `text`, never inside a UTF-8 sequence nor an escape pair."""
    if len(text) <= room:
        return text
    cut = text[:room].decode("utf-8", errors="ignore")
    trailing = len(cut) - len(cut.rstrip("\\"))
    return cut[: len(cut) - trailing % 2].encode()


def _field(name: str) -> str:
    return _one_line(name).replace(";", ":")


def _one_line(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text)


class CommandFileForwarder:
    def __init__(self, path: str, *, reader: Reader = Reader.CENTREON) -> None:
        self.path = path
        self.name = f"command_file:{path}"
        self.reader = reader
        self.delivered = 0
        self._fd: int | None = None

    def deliver(self, batch: list[PassiveResult], settled: Settled = ignore_settled) -> None:
        lines = [command_line(result, self.reader) for result in batch]
        fd = self._open()
        try:
            for positions, chunk in _chunks(lines):
                self._write(fd, chunk)
                self.delivered += len(positions)
                settled(positions)
        except ForwardError:
            self.close()
            raise

    def counters(self) -> dict[str, int]:
        return {"delivered": self.delivered}

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open(self) -> int:
        if self._fd is not None:
            return self._fd
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_APPEND)
        except OSError as error:
            if error.errno == errno.ENXIO:
                raise ForwardError(f"no reader on {self.path} (is the Engine running?)") from None
            raise ForwardError(f"cannot open {self.path}: {error.strerror}") from None
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            # A plain file (tests, or a spool): fine, but writes may then block; say so once.
            log.info("%s is not a FIFO: appending to it as a file", self.path)
            os.set_blocking(fd, True)
        self._fd = fd
        return fd

    def _write(self, fd: int, chunk: bytes) -> None:
        while True:
            try:
                written = os.write(fd, chunk)
            except BlockingIOError:
                _, ready, _ = select.select([], [fd], [], _WRITE_WAIT)
                if not ready:
                    raise ForwardError(f"{self.path} is full: the Engine is not reading") from None
                continue
            except OSError as error:  # EPIPE: the reader went away
                raise ForwardError(f"cannot write to {self.path}: {error.strerror}") from None
            if written == len(chunk):
                return
            # Only a plain file can take part of a chunk (a FIFO write <= PIPE_BUF is whole).
            chunk = chunk[written:]


def _chunks(lines: list[bytes]) -> list[tuple[list[int], bytes]]:
    """Whole lines packed into writes of at most PIPE_BUF bytes, each with the positions of
    its lines."""
    chunks: list[tuple[list[int], bytes]] = []
    positions: list[int] = []
    current = b""
    for position, line in enumerate(lines):
        if current and len(current) + len(line) > PIPE_BUF:
            chunks.append((positions, current))
            positions, current = [], b""
        positions.append(position)
        current += line
    if current:
        chunks.append((positions, current))
    return chunks
