"""What Centreon's REST API forwarders (v1 and v2) have in common, kept once so that both
handle secrets, tokens, rights, batching and failures the same way.

`HttpForwarder` owns the HTTP client, the lock that serialises `deliver` and `close`, the
redaction of the password and tokens, authentication, and the split of a batch into
`max_batch` chunks. A subclass says how its API logs in (`LOGIN`, `AUTH_FIELD`,
`AUTH_HEADER`, `_login_kwargs`), which replies mean "this token is refused"
(`TOKEN_REFUSED`), how it delivers one chunk (`_deliver_chunk`) and, if it can, how it logs
out (`_logout`).

A refused token is handled the way Centreon's code answers: a token that died (expired,
deleted) is replaced by logging in again, once; a refusal right after a fresh login means
the user lacks a right, which no login can fix: that is a `CentreonRightsError`, retried
with backoff (an administrator may grant the right) and logged once by the delivery.
A long-lived API token (Centreon 24.04+) is never replaced: its refusal is such an error too.

Log lines go to the subclass's own logger (`_log`), so logging configuration that names
`workers.forwarders.api_v1` or `api_v2` keeps working.
"""

from __future__ import annotations

import json
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Final, Self, TypeAlias

import httpx

from smtp_checks.consumer.forwarders.base import (
    CentreonRightsError,
    ForwardError,
    PassiveResult,
    Settled,
    ignore_settled,
)
from smtp_checks.consumer.forwarders.engine_text import Reader
from smtp_checks.shared.redaction import Redactor
from smtp_checks.shared.secrets import SecretNotFound, resolve_secret

DEFAULT_TIMEOUT: Final = 10.0  # seconds, for connect, read, write and pool each
MAX_BATCH: Final = 500  # results per submit request: batching hides Centreon's latency

SecretSource: TypeAlias = str | Callable[[], str]
"""A secret itself, or a function returning it (called at every use, so a rotated `file:`
secret is picked up without a restart)."""


# --- helpers ---------------------------------------------------------------------------------


def endpoint_label(url: str) -> str:
    """`host[:port]` of `url`: names the forwarder in logs without any path or userinfo."""
    parsed = httpx.URL(url)
    return f"{parsed.host}:{parsed.port}" if parsed.port else parsed.host


def server_message(response: httpx.Response, limit: int = 200) -> str:
    """Centreon's short reason for an error reply (`{"code": 404, "message": "..."}`), or the
    start of the body: one line, bounded."""
    try:
        data: Any = response.json()
    except ValueError:
        text = response.text
    else:
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            text = data["message"]
        elif isinstance(data, str):
            text = data
        else:
            text = json.dumps(data)
    return " ".join(text.split())[:limit]


def transport_failure(name: str, method: str, what: str, error: httpx.HTTPError) -> str:
    """One line for a request that got no HTTP answer."""
    if isinstance(error, httpx.TimeoutException):
        kind = f"timed out ({type(error).__name__})"
    elif isinstance(error, httpx.ConnectError):
        kind = "cannot connect"
    else:
        kind = type(error).__name__
    detail = str(error) or type(error).__name__
    return f"{name}: {method} {what}: {kind}: {detail}"


def get_secret(source: SecretSource, name: str) -> str:
    """The secret now; one gone missing is a ForwardError (retried later), and its message
    names the reference, never a value."""
    if isinstance(source, str):
        return source
    try:
        return source()
    except SecretNotFound as error:
        raise ForwardError(f"{name}: {error}") from None


def is_success(response: httpx.Response) -> bool:
    return 200 <= response.status_code < 300


def secret_source(reference: str) -> SecretSource:
    """A source for a config secret reference: resolved now, so a missing secret fails fast
    with `SecretNotFound`, and again at every use, so a rotation needs no restart."""
    resolve_secret(reference)
    return lambda: resolve_secret(reference)


# --- the base class --------------------------------------------------------------------------


class HttpForwarder(ABC):
    """A `Forwarder` that authenticates to Centreon with a token: one it logs in for
    (`username` and `password`), or a long-lived one (`token`). Synchronous; one call at a
    time (a lock serialises `deliver` and `close`)."""

    KIND: ClassVar[str]  # first part of `name`: "api_v1", "api_v2"
    LOGIN: ClassVar[str]  # the login request as errors name it ("/login", "authenticate")
    LOGIN_NOUN: ClassVar[str]  # "login", "authentication": in error messages
    LOGIN_GERUND: ClassVar[str]  # "logging in", "authenticating": in the re-login log line
    AUTH_FIELD: ClassVar[str]  # dotted path of the token in the login reply
    AUTH_HEADER: ClassVar[str]  # request header that carries the token
    TOKEN_REFUSED: ClassVar[frozenset[int]]  # statuses that mean "this token is refused"
    MISSING_RIGHT: ClassVar[str]  # what a user refused after a fresh login lacks
    _log: ClassVar[logging.Logger]  # the subclass's module logger

    def __init__(
        self,
        url: str,
        username: str | None = None,
        password: SecretSource | None = None,
        *,
        token: SecretSource | None = None,
        verify_tls: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        max_batch: int = MAX_BATCH,
        base_url: str = "",
        reader: Reader = Reader.CENTREON,
    ) -> None:
        if (token is None) == (username is None or password is None):
            raise ValueError("give either a username and a password, or a token")
        self.url = url
        self.name = f"{self.KIND}:{endpoint_label(url)}"
        self.username = username or ""
        self.timeout = timeout
        self.reader = reader
        self._password = password
        self._api_token = token
        self._max_batch = max(1, max_batch)
        self._client = httpx.Client(
            base_url=base_url,
            timeout=httpx.Timeout(timeout),
            verify=verify_tls,
            headers={"Accept": "application/json"},
            follow_redirects=False,
        )
        self._redact = Redactor()
        for secret in (password, token):
            if isinstance(secret, str):
                self._redact.add(secret)
        self._token: str | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._heartbeat: Settled = ignore_settled
        # Counters, for metrics and tests.
        self.delivered = 0
        self.dropped_unknown = 0
        self.dropped_invalid = 0
        self.logins = 0

    # --- the Forwarder protocol --------------------------------------------------------------

    def deliver(self, batch: list[PassiveResult], settled: Settled = ignore_settled) -> None:
        """Submit `batch` in order, `max_batch` results per request, settling each result as
        Centreon takes (or refuses for good) it, or raise ForwardError for the rest.
        `settled` is also called, with no position, after every request: the outbox's lease
        is renewed on it."""
        if not batch:
            return
        with self._lock:
            if self._closed:
                raise ForwardError(f"{self.name}: forwarder is closed")
            self._heartbeat = settled
            try:
                for start in range(0, len(batch), self._max_batch):
                    chunk = batch[start : start + self._max_batch]
                    self._deliver_chunk(chunk, _shifted(settled, start))
            finally:
                self._heartbeat = ignore_settled

    def counters(self) -> dict[str, int]:
        return {
            "delivered": self.delivered,
            "dropped_unknown": self.dropped_unknown,
            "dropped_invalid": self.dropped_invalid,
            "logins": self.logins,
        }

    def close(self) -> None:
        """Forget the token (logging out where the API can) and close the connection pool.
        Idempotent: the consumer may close a forwarder twice on shutdown."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            token, self._token = self._token, None
            if token is not None and self._api_token is None:
                self._logout(token)
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- what a subclass provides ------------------------------------------------------------

    @abstractmethod
    def _deliver_chunk(self, chunk: list[PassiveResult], settled: Settled) -> None:
        """Submit at most `max_batch` results, under the lock, settling them, or raise
        ForwardError."""

    @abstractmethod
    def _login_kwargs(self, password: str) -> dict[str, Any]:
        """The `httpx` arguments (body, params) of the login request."""

    def _logout(self, token: str) -> None:  # noqa: B027 - an optional hook, empty on purpose
        """Called by `close` with the current session token; best effort. Nothing by
        default: not every API can log out."""

    def _target(self, what: str) -> str:
        """The URL a request named `what` goes to: by default a path below the client's
        `base_url`."""
        return what

    def _describe(self, method: str, what: str) -> str:
        """How error messages name a request: method and path by default."""
        return f"{method} {what}"

    def _login_succeeded(self, response: httpx.Response) -> bool:
        return is_success(response)

    def _login_refused(self, response: httpx.Response) -> ForwardError:
        """The error for a login Centreon answered 401 or 403."""
        return ForwardError(
            f"{self.name}: {self.LOGIN_NOUN} refused for user '{self.username}' "
            f"(HTTP {response.status_code}): check the username and password"
        )

    # --- HTTP --------------------------------------------------------------------------------

    def _authorized(self, method: str, what: str, **kwargs: Any) -> httpx.Response:
        """A request with the token. Without a token yet, logs in first; a refused token is
        replaced by logging in again, once. Raises ForwardError for no answer, and
        CentreonRightsError for a refusal that a new token cannot fix."""
        fresh = self._token is None
        if fresh:
            self._authenticate()
        response = self._with_token(method, what, **kwargs)
        if response.status_code not in self.TOKEN_REFUSED:
            return response
        if fresh or self._api_token is not None:
            raise self._rights_error(response, method, what)
        self._log.info("%s: token refused (expired?), %s again", self.name, self.LOGIN_GERUND)
        self._token = None
        self._authenticate()
        response = self._with_token(method, what, **kwargs)
        if response.status_code in self.TOKEN_REFUSED:
            raise self._rights_error(response, method, what)
        return response

    def _rights_error(self, response: httpx.Response, method: str, what: str) -> ForwardError:
        if self._api_token is not None:
            who = "the API token was refused (revoked, expired or mistyped?), or its user lacks"
        else:
            who = (
                f"right after a fresh {self.LOGIN_NOUN} as '{self.username}': a new token "
                "cannot help, the user lacks"
            )
        reason = server_message(response)
        self._token = None
        return CentreonRightsError(
            self._redact(
                f"{self.name}: {self._describe(method, what)}: HTTP {response.status_code}"
                f"{f' ({reason})' if reason else ''} {who} {self.MISSING_RIGHT}"
            )
        )

    def _with_token(self, method: str, what: str, **kwargs: Any) -> httpx.Response:
        assert self._token is not None
        return self._request(method, what, headers={self.AUTH_HEADER: self._token}, **kwargs)

    def _request(self, method: str, what: str, **kwargs: Any) -> httpx.Response:
        """Any request; no answer at all (refused, timeout) is a ForwardError."""
        try:
            response = self._client.request(method, self._target(what), **kwargs)
        except httpx.HTTPError as error:
            raise ForwardError(
                self._redact(transport_failure(self.name, method, what, error))
            ) from error
        self._heartbeat(())
        return response

    def _authenticate(self) -> None:
        if self._api_token is not None:
            token = get_secret(self._api_token, self.name)
            self._redact.add(token)
            self._token = token
            return
        self._login()

    def _login(self) -> None:
        assert self._password is not None
        password = get_secret(self._password, self.name)
        self._redact.add(password)
        response = self._request("POST", self.LOGIN, **self._login_kwargs(password))
        if response.status_code in (401, 403):
            raise self._login_refused(response)
        if not self._login_succeeded(response):
            raise self._unexpected(response, "POST", self.LOGIN)
        token: Any
        try:
            token = response.json()
            for key in self.AUTH_FIELD.split("."):
                token = token[key]
        except (ValueError, KeyError, TypeError):
            token = None
        if not isinstance(token, str) or not token:
            raise ForwardError(
                f"{self.name}: {self._describe('POST', self.LOGIN)}: reply has no {self.AUTH_FIELD}"
            )
        self._redact.add(token)
        self._token = token
        self.logins += 1

    def _unexpected(self, response: httpx.Response, method: str, what: str) -> ForwardError:
        reason = server_message(response)
        return ForwardError(
            self._redact(
                f"{self.name}: {self._describe(method, what)}: HTTP {response.status_code}"
                + (f": {reason}" if reason else "")
            )
        )


def _shifted(settled: Settled, offset: int) -> Settled:
    """`settled` for a chunk that starts at `offset` in the batch."""
    if offset == 0:
        return settled
    return lambda positions: settled([offset + position for position in positions])
