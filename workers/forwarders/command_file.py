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

from workers.forwarders.base import ForwardError, PassiveResult

log = logging.getLogger("smtp_checks.forwarder.command_file")

PIPE_BUF = 4096  # writes up to this size to a FIFO are atomic (POSIX; Linux: 4096)
_WRITE_WAIT = 5.0  # seconds to wait for room in a full pipe before giving up for now


def command_line(result: PassiveResult) -> bytes:
    """`[t] PROCESS_SERVICE_CHECK_RESULT;host;service;code;output|perfdata\\n`, one line that
    fits one atomic write. Names and text come sanitised; this is the last guard."""
    fields = [_field(result.host), _field(result.service), str(result.status)]
    prefix = f"[{int(result.check_time)}] PROCESS_SERVICE_CHECK_RESULT;{';'.join(fields)};"
    output = _one_line(result.plugin_output)
    line = (prefix + output).encode("utf-8")
    if len(line) + 1 > PIPE_BUF:
        # Cut the text, not the command; never inside a UTF-8 sequence.
        line = line[: PIPE_BUF - 1].decode("utf-8", errors="ignore").encode("utf-8")
    return line + b"\n"


def _field(name: str) -> str:
    return _one_line(name).replace(";", ":")


def _one_line(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text)


class CommandFileForwarder:
    def __init__(self, path: str) -> None:
        self.path = path
        self.name = f"command_file:{path}"
        self._fd: int | None = None

    def deliver(self, batch: list[PassiveResult]) -> None:
        chunks = _chunks([command_line(result) for result in batch])
        fd = self._open()
        try:
            for chunk in chunks:
                self._write(fd, chunk)
        except ForwardError:
            self.close()
            raise

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


def _chunks(lines: list[bytes]) -> list[bytes]:
    """Whole lines packed into writes of at most PIPE_BUF bytes."""
    chunks: list[bytes] = []
    current = b""
    for line in lines:
        if current and len(current) + len(line) > PIPE_BUF:
            chunks.append(current)
            current = b""
        current += line
    if current:
        chunks.append(current)
    return chunks
