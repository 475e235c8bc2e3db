"""A lease in Redis: one key naming its holder, with a TTL, taken or renewed by one script.

Who holds the beat's leadership and who delivers an outbox are both this. A holder is named
by the process that holds it (`ProcessName`: machine, pid and a random token), so that a
process restarted on the same machine can tell that the holder it finds is a dead
predecessor and take the lease over at once, instead of waiting out its TTL. A holder on
another machine, or one whose process still runs, is only ever replaced after its TTL.

Only the holder may renew or release its lease: each is one script comparing the holder, so
a process whose lease expired (a long pause, a network split) can never renew or release
the lease another process took since.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import redis

# KEYS: lease. ARGV: holder, ttl ms, the holder it may replace ('' for none).
# Take the lease if it is free (or held by that replaceable holder), renew it if it is ours.
_TAKE_OR_RENEW = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if current == false or (ARGV[3] ~= '' and current == ARGV[3]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

# KEYS: lease. ARGV: holder, ttl ms. Extend it only if it is still ours.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS: lease. ARGV: holder. Delete it only if it is still ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


_MINTED: set[str] = set()  # tokens of the names this process made: those are alive


@cache
def this_machine() -> str:
    """Names this machine and process namespace: a pid means the same process only here.

    The host name alone is not enough: containers that share it (host networking) have
    process namespaces of their own, where the same pid is another process."""
    try:
        namespace = os.readlink("/proc/self/ns/pid").removeprefix("pid:")
    except OSError:
        namespace = "-"
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        boot = "-"
    return f"{socket.gethostname()}~{namespace}~{boot}"


@dataclass(frozen=True)
class ProcessName:
    """A process, as a lease holder: `machine/pid/token`."""

    machine: str
    pid: int
    token: str

    @classmethod
    def mine(cls) -> ProcessName:
        """A new name for this process (a new token each time: two holders in one process
        are two holders)."""
        token = secrets.token_hex(8)
        _MINTED.add(token)
        return cls(this_machine(), os.getpid(), token)

    @classmethod
    def parse(cls, text: str) -> ProcessName | None:
        machine, _, rest = text.rpartition("/")
        machine, _, pid = machine.rpartition("/")
        if not machine or not pid.isdigit() or not rest:
            return None
        return cls(machine, int(pid), rest)

    def __str__(self) -> str:
        return f"{self.machine}/{self.pid}/{self.token}"

    def is_dead_here(self) -> bool:
        """True only when this name is certainly a process of this machine that is gone:
        its pid no longer exists, or it is our own pid under a token this process never
        made (we were restarted as the same pid, as in a container). Anything else may
        still be alive."""
        if self.machine != this_machine():
            return False
        if self.pid == os.getpid():
            return self.token not in _MINTED
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # it exists, as another user
        return False


def dead_holder(raw: bytes | str | None) -> str:
    """`raw` (a holder as stored) if it names a dead process of this machine, else ''."""
    if raw is None:
        return ""
    text = raw.decode() if isinstance(raw, bytes) else raw
    name = ProcessName.parse(text)
    return text if name is not None and name.is_dead_here() else ""


class Lease:
    """One lease key, seen by one holder (this process, unless told otherwise)."""

    def __init__(self, client: redis.Redis, key: str, holder: ProcessName | None = None) -> None:
        self._client = client
        self.key = key
        self.holder = str(holder or ProcessName.mine())
        self._take_or_renew = client.register_script(_TAKE_OR_RENEW)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def hold(self, ttl: float) -> bool:
        """Take the lease (free, or left by a dead process of this machine) or renew it;
        True if this holder has it for `ttl` seconds from now."""
        replaceable = dead_holder(self._client.get(self.key))
        return bool(self._take_or_renew(keys=[self.key], args=[self.holder, _ms(ttl), replaceable]))

    def renew(self, ttl: float) -> bool:
        """Extend the lease if this holder still has it; False if it was lost."""
        return bool(self._renew(keys=[self.key], args=[self.holder, _ms(ttl)]))

    def release(self) -> bool:
        """Give the lease up if this holder has it (a clean stop: the next one need not wait)."""
        return bool(self._release(keys=[self.key], args=[self.holder]))


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
