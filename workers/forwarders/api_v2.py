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
import time
from typing import Any, Final, TypeAlias

import httpx

from shared.config import ApiV2Forwarder as ApiV2Config
from workers.forwarders.base import ForwardError, PassiveResult
from workers.forwarders.http_forwarder import (
    DEFAULT_TIMEOUT,
    MAX_BATCH,
    HttpForwarder,
    PasswordSource,
    is_success,
    secret_source,
    server_message,
)

__all__ = ["ApiV2Forwarder", "PasswordSource"]

log = logging.getLogger(__name__)

UNKNOWN_RECHECK: Final = 300.0  # seconds before a name that resolved to nothing is looked up again
SUBMIT_PATH: Final = "/monitoring/resources/submit"

Ids: TypeAlias = tuple[int, int]  # (host_id, service_id)


class ApiV2Forwarder(HttpForwarder):
    """A `Forwarder` for Centreon's REST API v2. Synchronous; one call at a time (a lock
    serialises `deliver` and `close`)."""

    KIND = "api_v2"
    LOGIN = "/login"
    LOGIN_NOUN = "login"
    LOGIN_GERUND = "logging in"
    AUTH_FIELD = "security.token"
    AUTH_HEADER = "X-AUTH-TOKEN"
    _log = log

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
        # Requests name paths below the API root (`/login`, `/monitoring/services`).
        root = url.rstrip("/")
        super().__init__(
            root,
            username,
            password,
            verify_tls=verify_tls,
            timeout=timeout,
            max_batch=max_batch,
            base_url=root,
        )
        self._unknown_recheck = unknown_recheck
        self._ids: dict[tuple[str, str], Ids] = {}
        self._unknown: dict[tuple[str, str], float] = {}  # name -> monotonic time of the lookup
        self.lookups = 0

    @classmethod
    def from_config(cls, model: ApiV2Config, *, timeout: float = DEFAULT_TIMEOUT) -> ApiV2Forwarder:
        """Build from a `centreon.forwarders` entry. The password reference is resolved now
        (a missing secret fails fast with `SecretNotFound`) and again at every login."""
        return cls(
            model.url,
            model.username,
            secret_source(str(model.password)),
            verify_tls=model.verify_tls,
            timeout=timeout,
        )

    # --- login -------------------------------------------------------------------------------

    def _login_kwargs(self, password: str) -> dict[str, Any]:
        credentials = {"login": self.username, "password": password}
        return {"json": {"security": {"credentials": credentials}}}

    def _logout(self, token: str) -> None:
        """Best effort with a short timeout: a token left behind expires after an hour."""
        try:
            self._client.get(
                "/logout", headers={self.AUTH_HEADER: token}, timeout=min(self.timeout, 5.0)
            )
        except httpx.HTTPError as error:
            log.debug("%s: logout failed: %s", self.name, type(error).__name__)

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
        """An authenticated request (see `_authorized`). Also raises ForwardError for 5xx and
        403: worth retrying later, unlike a refusal of one result."""
        response = self._authorized(method, path, json=body, params=params)
        if response.status_code == 403 or response.status_code >= 500:
            raise self._unexpected(response, method, path)
        return response


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
