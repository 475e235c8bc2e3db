"""Shared fixtures: the test PKI and real in-process SMTP servers (see smtp_servers.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.postfix import mta, postfix_factory  # noqa: F401  (a private Postfix, per module)
from tests.redis_fixtures import redis_url  # noqa: F401
from tests.smtp_servers import (
    TEST_PASSWORD,
    TEST_USER,
    Pki,
    RawScenario,
    RawServer,
    ServerPool,
    SmtpServer,
)


@pytest.fixture(scope="session")
def pki() -> Iterator[Pki]:
    """Test CA (``pki.ca_pem_path``) and server certificate variants."""
    p = Pki()
    yield p
    p.cleanup()


@pytest.fixture
def server_pool() -> Iterator[ServerPool]:
    pool = ServerPool()
    yield pool
    pool.close()


@pytest.fixture
def smtp_server_factory(server_pool: ServerPool) -> Callable[..., SmtpServer]:
    """``smtp_server_factory(**SmtpServer kwargs)``: started now, stopped at teardown."""
    return server_pool.smtp


@pytest.fixture
def raw_server_factory(server_pool: ServerPool) -> Callable[..., RawServer]:
    """``raw_server_factory(scenario, **kwargs)``: started now, stopped at teardown."""

    def make(scenario: RawScenario, **kwargs: Any) -> RawServer:
        return server_pool.raw(scenario, **kwargs)

    return make


@pytest.fixture
def plain_server(server_pool: ServerPool) -> SmtpServer:
    """No TLS; AUTH PLAIN/LOGIN/CRAM-MD5 offered over plain text for TEST_USER."""
    return server_pool.smtp(username=TEST_USER, password=TEST_PASSWORD, auth_require_tls=False)


@pytest.fixture
def starttls_server(server_pool: ServerPool, pki: Pki) -> SmtpServer:
    """STARTTLS with the trusted certificate; AUTH (all three) only after STARTTLS."""
    return server_pool.smtp(
        tls="starttls",
        tls_context=pki.server_context("trusted"),
        username=TEST_USER,
        password=TEST_PASSWORD,
    )


@pytest.fixture
def ssl_server(server_pool: ServerPool, pki: Pki) -> SmtpServer:
    """Implicit TLS with the trusted certificate; AUTH (all three) for TEST_USER."""
    return server_pool.smtp(
        tls="ssl",
        tls_context=pki.server_context("trusted"),
        username=TEST_USER,
        password=TEST_PASSWORD,
    )
