"""Real-Redis fixtures: one database number per test module family, flushed around each test.

Redis is expected at ``SMTP_CHECKS_TEST_REDIS`` (default ``redis://127.0.0.1:6379``). When it is
unreachable a test is skipped locally, but fails loudly when ``CI=true``: CI must not go green
by skipping every Redis test.

Reuse for another database number::

    @pytest.fixture
    def my_redis_url() -> Iterator[str]:
        yield from flushed_redis_db(12)
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

REDIS_BASE_URL = os.environ.get("SMTP_CHECKS_TEST_REDIS", "redis://127.0.0.1:6379").rstrip("/")
TARGET_LIMITS_DB = 13


def redis_url_for(db: int) -> str:
    """The URL of database `db` on the test Redis."""
    return f"{REDIS_BASE_URL}/{db}"


def _flush_or_give_up(url: str) -> None:
    client = redis.Redis.from_url(
        url, socket_connect_timeout=1, socket_timeout=2, retry=Retry(NoBackoff(), 0)
    )
    try:
        client.flushdb()
    except redis.exceptions.RedisError as exc:
        message = f"Redis unreachable at {url}: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: Redis tests must run, not be skipped)")
        pytest.skip(message)
    finally:
        client.close()


def flushed_redis_db(db: int) -> Iterator[str]:
    """Yield the URL of database `db`, flushed before and after; skip/fail if unreachable."""
    url = redis_url_for(db)
    _flush_or_give_up(url)
    yield url
    _flush_or_give_up(url)


@pytest.fixture
def redis_url() -> Iterator[str]:
    """Database 13 (the target-limits tests), flushed at start and end of each test."""
    yield from flushed_redis_db(TARGET_LIMITS_DB)
