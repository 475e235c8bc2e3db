"""Forward passive results through Centreon's REST API v2 (`/centreon/api/latest`).

- Login once (`POST /login`) and reuse the token (`X-AUTH-TOKEN`) across batches; a 401 means
  the token expired (Centreon drops tokens unused for an hour): log in again once and retry.
- Resolve (host name, service description) to numeric ids with `GET /monitoring/services`
  and keep them in a cache. An id Centreon later refuses with 404 is evicted and looked up
  again; a name that resolves to nothing is remembered for `unknown_recheck` seconds.
- Submit a batch with one `POST /monitoring/resources/submit` (204 No Content on success).

API v2 has no check-time field: the web server stamps its own "now" on every submitted result,
so `PassiveResult.check_time` is not sent. A refresh therefore always resets Centreon's freshness
clock, and a result delayed in the outbox shows the time it reached Centreon.

Failures worth retrying (connection refused, timeout, 5xx, 401 right after a fresh login, 403)
raise `ForwardError`, whose message never contains the password or the token. A result Centreon
refuses for good (unknown host or service, invalid content) is logged, counted in
`dropped_unknown` / `dropped_invalid` and not retried.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final, TypeAlias

import httpx

from shared.config import ApiV2Forwarder as ApiV2Config
from workers.forwarders.base import ForwardError, PassiveResult
from workers.secrets import SecretNotFound, resolve_secret

__all__ = ["ApiV2Forwarder", "PasswordSource"]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT: Final = 10.0  # seconds, for connect, read, write and pool each
UNKNOWN_RECHECK: Final = 300.0  # seconds before a name that resolved to nothing is looked up again
MAX_BATCH: Final = 100  # resources per submit request
SUBMIT_PATH: Final = "/monitoring/resources/submit"

PasswordSource: TypeAlias = str | Callable[[], str]
"""The password itself, or a function returning it (called at every login, so a rotated
`file:` secret is picked up without a restart)."""

Ids: TypeAlias = tuple[int, int]  # (host_id, service_id)


# --- helpers shared with the v1 forwarder -----------------------------------------------------


def endpoint_label(url: str) -> str:
    """`host[:port]` of `url`: names the forwarder in logs without any path or userinfo."""
    parsed = httpx.URL(url)
    return f"{parsed.host}:{parsed.port}" if parsed.port else parsed.host


class Redactor:
    """Masks known secrets (password, tokens) in text bound for a log line or an error."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def add(self, secret: str) -> None:
        if secret:
            self._secrets.add(secret)

    def __call__(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


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


def get_password(source: PasswordSource, name: str) -> str:
    if isinstance(source, str):
        return source
    try:
        return source()
    except SecretNotFound as error:  # names the reference, never a value
        raise ForwardError(f"{name}: {error}") from None


def is_success(response: httpx.Response) -> bool:
    return 200 <= response.status_code < 300


# --- the forwarder ---------------------------------------------------------------------------


class ApiV2Forwarder:
    """A `Forwarder` for Centreon's REST API v2. Synchronous; one call at a time (a lock
    serialises `deliver` and `close`)."""

    def __init__(
        self,
        url: str,
        username: str,
        password: PasswordSource,
        *,
        verify_tls: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        unknown_recheck: float = UNKNOWN_RECHECK,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.url = url.rstrip("/")
        self.name = f"api_v2:{endpoint_label(url)}"
        self.username = username
        self.timeout = timeout
        self._password = password
        self._unknown_recheck = unknown_recheck
        self._max_batch = max(1, max_batch)
        self._client = httpx.Client(
            base_url=self.url,
            timeout=httpx.Timeout(timeout),
            verify=verify_tls,
            headers={"Accept": "application/json"},
            follow_redirects=False,
        )
        self._redact = Redactor()
        if isinstance(password, str):
            self._redact.add(password)
        self._token: str | None = None
        self._ids: dict[tuple[str, str], Ids] = {}
        self._unknown: dict[tuple[str, str], float] = {}  # name -> monotonic time of the lookup
        self._lock = threading.Lock()
        self._closed = False
        # Counters, for metrics and tests.
        self.delivered = 0
        self.dropped_unknown = 0
        self.dropped_invalid = 0
        self.logins = 0
        self.lookups = 0

    @classmethod
    def from_config(cls, model: ApiV2Config, *, timeout: float = DEFAULT_TIMEOUT) -> ApiV2Forwarder:
        """Build from a `centreon.forwarders` entry. The password reference is resolved now
        (a missing secret fails fast with `SecretNotFound`) and again at every login."""
        reference = str(model.password)
        resolve_secret(reference)
        return cls(
            model.url,
            model.username,
            lambda: resolve_secret(reference),
            verify_tls=model.verify_tls,
            timeout=timeout,
        )

    # --- the Forwarder protocol --------------------------------------------------------------

    def deliver(self, batch: list[PassiveResult]) -> None:
        """Submit `batch` in order, `max_batch` resources per request, or raise ForwardError.
        After a ForwardError the whole batch may be delivered again: a result Centreon already
        took is then submitted twice, which is harmless for a passive state."""
        if not batch:
            return
        with self._lock:
            if self._closed:
                raise ForwardError(f"{self.name}: forwarder is closed")
            for start in range(0, len(batch), self._max_batch):
                self._deliver_chunk(batch[start : start + self._max_batch])

    def close(self) -> None:
        """Log out (best effort, short timeout) and close the connection pool."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            token, self._token = self._token, None
            if token is not None:
                try:
                    self._client.get(
                        "/logout",
                        headers={"X-AUTH-TOKEN": token},
                        timeout=min(self.timeout, 5.0),
                    )
                except httpx.HTTPError as error:
                    log.debug("%s: logout failed: %s", self.name, type(error).__name__)
            self._client.close()

    def __enter__(self) -> ApiV2Forwarder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- delivery ----------------------------------------------------------------------------

    def _deliver_chunk(self, chunk: list[PassiveResult]) -> None:
        entries: list[tuple[PassiveResult, Ids]] = []
        for result in chunk:
            ids = self._resolve(result.host, result.service)
            if ids is None:
                self._drop_unknown(result)
            else:
                entries.append((result, ids))
        if not entries:
            return
        response = self._call(
            "POST", SUBMIT_PATH, body={"resources": [_resource(r, ids) for r, ids in entries]}
        )
        if is_success(response):
            self.delivered += len(entries)
            return
        if response.status_code in (400, 404, 422):
            # Some resource of the batch is refused (a stale id, an invalid field): find which
            # by submitting them one at a time with freshly looked-up ids.
            log.info(
                "%s: batch of %d refused (HTTP %d: %s); submitting one at a time",
                self.name,
                len(entries),
                response.status_code,
                self._redact(server_message(response)),
            )
            self._deliver_one_by_one([result for result, _ in entries])
            return
        raise self._unexpected(response, "POST", SUBMIT_PATH)

    def _deliver_one_by_one(self, results: list[PassiveResult]) -> None:
        for result in results:
            key = (result.host, result.service)
            self._ids.pop(key, None)
            ids = self._resolve(*key)
            if ids is None:
                self._drop_unknown(result)
                continue
            response = self._call("POST", SUBMIT_PATH, body={"resources": [_resource(result, ids)]})
            if is_success(response):
                self.delivered += 1
            elif response.status_code == 404:
                self._ids.pop(key, None)
                self._drop_unknown(result, server_message(response))
            elif response.status_code in (400, 422):
                self.dropped_invalid += 1
                log.warning(
                    "%s: Centreon refused the result for %s/%s (HTTP %d: %s); dropped",
                    self.name,
                    result.host,
                    result.service,
                    response.status_code,
                    self._redact(server_message(response)),
                )
            else:
                raise self._unexpected(response, "POST", SUBMIT_PATH)

    def _drop_unknown(self, result: PassiveResult, reason: str = "") -> None:
        self.dropped_unknown += 1
        log.warning(
            "%s: no service %r on host %r in Centreon's real-time data%s; result dropped",
            self.name,
            result.service,
            result.host,
            f" ({self._redact(reason)})" if reason else "",
        )

    # --- name -> id resolution ---------------------------------------------------------------

    def _resolve(self, host: str, service: str) -> Ids | None:
        key = (host, service)
        cached = self._ids.get(key)
        if cached is not None:
            return cached
        looked_up_at = self._unknown.get(key)
        if looked_up_at is not None and time.monotonic() - looked_up_at < self._unknown_recheck:
            return None
        search = {"$and": [{"host.name": {"$eq": host}}, {"service.description": {"$eq": service}}]}
        path = "/monitoring/services"
        response = self._call(
            "GET", path, params={"search": json.dumps(search, separators=(",", ":"))}
        )
        if response.status_code != 200:
            raise self._unexpected(response, "GET", path)
        self.lookups += 1
        ids = self._pick(response, host, service)
        if ids is None:
            self._unknown[key] = time.monotonic()
            return None
        self._unknown.pop(key, None)
        self._ids[key] = ids
        return ids

    def _pick(self, response: httpx.Response, host: str, service: str) -> Ids | None:
        """The ids of the entry named exactly (host, service): Centreon's database may compare
        names without regard to case, the Engine does not."""
        try:
            items = response.json()["result"]
            for item in items:
                item_host = item["host"]
                if item.get("description", service) != service:
                    continue
                if item_host.get("name", host) != host:
                    continue
                return int(item_host["id"]), int(item["id"])
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ForwardError(
                f"{self.name}: GET /monitoring/services: unexpected reply "
                f"(no result[].id / result[].host.id)"
            ) from None
        return None

    # --- HTTP --------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        """An authenticated request; logs in first if needed and once more on a 401. Raises
        ForwardError for no answer, 5xx, 403 and a 401 that survives a fresh login."""
        if self._token is None:
            self._login()
        response = self._send(method, path, body=body, params=params)
        if response.status_code == 401:
            log.info("%s: token refused (expired?), logging in again", self.name)
            self._token = None
            self._login()
            response = self._send(method, path, body=body, params=params)
            if response.status_code == 401:
                self._token = None
                raise ForwardError(
                    f"{self.name}: {method} {path}: 401 Unauthorized right after a fresh login "
                    f"as '{self.username}'"
                )
        if response.status_code == 403 or response.status_code >= 500:
            raise self._unexpected(response, method, path)
        return response

    def _send(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None,
        params: dict[str, str] | None,
    ) -> httpx.Response:
        assert self._token is not None
        return self._request(
            method, path, json=body, params=params, headers={"X-AUTH-TOKEN": self._token}
        )

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._client.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise ForwardError(
                self._redact(transport_failure(self.name, method, path, error))
            ) from error

    def _login(self) -> None:
        password = get_password(self._password, self.name)
        self._redact.add(password)
        credentials = {"login": self.username, "password": password}
        response = self._request("POST", "/login", json={"security": {"credentials": credentials}})
        if response.status_code in (401, 403):
            raise ForwardError(
                f"{self.name}: login refused for user '{self.username}' "
                f"(HTTP {response.status_code}): check the username and password"
            )
        if not is_success(response):
            raise self._unexpected(response, "POST", "/login")
        try:
            token = response.json()["security"]["token"]
        except (ValueError, KeyError, TypeError):
            token = None
        if not isinstance(token, str) or not token:
            raise ForwardError(f"{self.name}: POST /login: reply has no security.token")
        self._redact.add(token)
        self._token = token
        self.logins += 1

    def _unexpected(self, response: httpx.Response, method: str, path: str) -> ForwardError:
        reason = server_message(response)
        return ForwardError(
            self._redact(
                f"{self.name}: {method} {path}: HTTP {response.status_code}"
                + (f": {reason}" if reason else "")
            )
        )


def _resource(result: PassiveResult, ids: Ids) -> dict[str, Any]:
    host_id, service_id = ids
    return {
        "type": "service",
        "id": service_id,
        "parent": {"id": host_id},
        "status": result.status,
        "output": result.output,
        "performance_data": result.perfdata,
    }
