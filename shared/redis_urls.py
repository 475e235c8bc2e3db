"""The forms a Redis URL takes in the config: redis-py's (`redis://`, `rediss://`,
`unix://`), kombu's Unix socket (`redis+socket://`), and kombu's Redis Sentinel form,
`sentinel://[[USER]:PASSWORD@]HOST:PORT[/DB];sentinel://HOST2:PORT[/DB]...`: the sentinels
to ask where the master is, the master's password and database in the first of them (kombu
reads them from the first only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

SENTINEL_SCHEME = "sentinel://"
SENTINEL_PORT = 26379  # a sentinel's port when the URL gives none, as kombu's
REDIS_SCHEMES = ("redis://", "rediss://", "redis+socket://", "unix://")


def is_sentinel_url(url: str) -> bool:
    return url.startswith(SENTINEL_SCHEME)


def is_redis_url(url: str) -> bool:
    """A Redis, plain or behind Sentinel (anything else is an AMQP broker)."""
    return url.startswith(REDIS_SCHEMES) or is_sentinel_url(url)


def redis_py_url(url: str) -> str:
    """A plain Redis URL as redis-py spells it (kombu's `redis+socket://` is `unix://`)."""
    if url.startswith("redis+socket://"):
        return "unix://" + url.removeprefix("redis+socket://")
    return url


@dataclass(frozen=True)
class SentinelUrl:
    """A Sentinel URL, read: the sentinels, and the master's database and credentials."""

    sentinels: tuple[tuple[str, int], ...]
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Read kombu's Sentinel form; ValueError naming what is wrong (never the password)."""
    sentinels: list[tuple[str, int]] = []
    first = None
    for position, text in enumerate(url.split(";"), start=1):
        part = text.strip()
        if not is_sentinel_url(part):
            raise ValueError(
                f"part {position} of a Sentinel URL must start with sentinel:// "
                "(sentinel://host1:26379;sentinel://host2:26379/0)"
            )
        try:
            split = urlsplit(part)
            port = split.port or SENTINEL_PORT
        except ValueError:
            raise ValueError(f"part {position} of the Sentinel URL has an invalid port") from None
        if not split.hostname:
            raise ValueError(f"part {position} of the Sentinel URL names no host")
        if split.query or split.fragment:
            raise ValueError(f"part {position} of the Sentinel URL: options are not supported")
        sentinels.append((split.hostname, port))
        if first is None:
            first = split
    assert first is not None  # split() gives at least one part
    db_text = first.path.strip("/") or "0"
    if not db_text.isdigit():
        raise ValueError("the database of a Sentinel URL is a number (sentinel://host:26379/0)")
    return SentinelUrl(
        tuple(sentinels),
        int(db_text),
        unquote(first.username) if first.username else None,
        unquote(first.password) if first.password is not None else None,
    )
