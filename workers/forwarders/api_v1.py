"""Forward passive results through Centreon's REST API v1 (`/centreon/api/index.php`), for
platforms without API v2.

- `POST ?action=authenticate` with form fields `username`, `password` returns `authToken`,
  sent back in the `centreon-auth-token` header; a 401 means it expired: authenticate again
  once and retry.
- `POST ?action=submit&object=centreon_submit_results` takes results by names, each with its
  own `updatetime` (the check time, which the Engine records as `last_check`).
- The reply carries one code per result, in order: 202 accepted, 404 unknown host or service,
  400 invalid (status, timestamp or perfdata format). When any failed the HTTP status is 206
  and Centreon (`CentreonWebService::sendJson` on a `RestPartialContent`) sends the list
  JSON-encoded a second time, as a JSON string: both forms are read.

404 and 400 results are logged, counted (`dropped_unknown`, `dropped_invalid`) and not
retried. Anything else (no answer, timeout, 5xx, a per-result 5xx such as "Error during send
command to CentCore", a request-level 400 such as "Can't open centcore pipe", a 401 right after
a fresh login) raises `ForwardError`, whose message never contains the password or the token.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Final

import httpx

from shared.config import ApiV1Forwarder as ApiV1Config
from workers.forwarders.api_v2 import (
    DEFAULT_TIMEOUT,
    MAX_BATCH,
    PasswordSource,
    Redactor,
    endpoint_label,
    get_password,
    server_message,
    transport_failure,
)
from workers.forwarders.base import ForwardError, PassiveResult
from workers.secrets import resolve_secret

__all__ = ["ApiV1Forwarder"]

log = logging.getLogger(__name__)

AUTHENTICATE: Final = {"action": "authenticate"}
SUBMIT: Final = {"action": "submit", "object": "centreon_submit_results"}
ACCEPTED: Final = 202
PARTIAL: Final = 206


class ApiV1Forwarder:
    """A `Forwarder` for Centreon's REST API v1 `centreon_submit_results`. Synchronous; one
    call at a time (a lock serialises `deliver` and `close`)."""

    def __init__(
        self,
        url: str,
        username: str,
        password: PasswordSource,
        *,
        verify_tls: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.url = url
        self.name = f"api_v1:{endpoint_label(url)}"
        self.username = username
        self.timeout = timeout
        self._password = password
        self._max_batch = max(1, max_batch)
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            verify=verify_tls,
            headers={"Accept": "application/json"},
            follow_redirects=False,
        )
        self._redact = Redactor()
        if isinstance(password, str):
            self._redact.add(password)
        self._token: str | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.delivered = 0
        self.dropped_unknown = 0
        self.dropped_invalid = 0
        self.logins = 0

    @classmethod
    def from_config(cls, model: ApiV1Config, *, timeout: float = DEFAULT_TIMEOUT) -> ApiV1Forwarder:
        """Build from a `centreon.forwarders` entry. The password reference is resolved now
        (a missing secret fails fast with `SecretNotFound`) and again at every login."""
        reference = str(model.password)
        resolve_secret(reference)
        return cls(model.url, model.username, lambda: resolve_secret(reference), timeout=timeout)

    # --- the Forwarder protocol --------------------------------------------------------------

    def deliver(self, batch: list[PassiveResult]) -> None:
        """Submit `batch` in order, `max_batch` results per request, or raise ForwardError.
        After a ForwardError the whole batch may be delivered again: a result Centreon already
        took is then submitted twice (same check time), which is harmless."""
        if not batch:
            return
        with self._lock:
            if self._closed:
                raise ForwardError(f"{self.name}: forwarder is closed")
            for start in range(0, len(batch), self._max_batch):
                self._deliver_chunk(batch[start : start + self._max_batch])

    def close(self) -> None:
        """API v1 has no logout: forget the token and close the connection pool."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._token = None
            self._client.close()

    def __enter__(self) -> ApiV1Forwarder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- delivery ----------------------------------------------------------------------------

    def _deliver_chunk(self, chunk: list[PassiveResult]) -> None:
        response = self._submit({"results": [_result(result) for result in chunk]})
        if response.status_code not in (200, PARTIAL):
            raise self._unexpected(response)
        codes = self._codes(response, len(chunk))
        if codes is None:
            if response.status_code == PARTIAL:
                raise ForwardError(
                    f"{self.name}: submit: HTTP 206 (some results refused) without a readable "
                    f"per-result list; the batch is kept"
                )
            self.delivered += len(chunk)  # 200: everything accepted
            return
        transient: list[str] = []
        for result, (code, message) in zip(chunk, codes, strict=True):
            if code == ACCEPTED:
                self.delivered += 1
            elif code == 404:
                self.dropped_unknown += 1
                log.warning(
                    "%s: Centreon does not know %s/%s (%s); result dropped",
                    self.name,
                    result.host,
                    result.service,
                    message,
                )
            elif code == 400:
                self.dropped_invalid += 1
                log.warning(
                    "%s: Centreon refused the result for %s/%s (%s); dropped",
                    self.name,
                    result.host,
                    result.service,
                    message,
                )
            else:
                transient.append(f"{result.host}/{result.service}: {code} {message}")
        if transient:
            raise ForwardError(
                self._redact(
                    f"{self.name}: submit: {len(transient)} result(s) failed on Centreon's "
                    f"side ({'; '.join(transient[:3])}); the batch is kept"
                )
            )

    def _codes(self, response: httpx.Response, expected: int) -> list[tuple[int, str]] | None:
        """Each result's (code, message), in order; None when the reply does not say."""
        try:
            data: Any = response.json()
            if isinstance(data, str):  # 206: the list, JSON-encoded once more
                data = json.loads(data)
            items = data["results"]
            codes = [
                (int(item["code"]), " ".join(str(item.get("message", "")).split())[:200])
                for item in items
            ]
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        if len(codes) != expected:
            log.warning(
                "%s: submit reply lists %d result(s) for %d sent", self.name, len(codes), expected
            )
            return None
        return [(code, self._redact(message)) for code, message in codes]

    # --- HTTP --------------------------------------------------------------------------------

    def _submit(self, body: dict[str, Any]) -> httpx.Response:
        if self._token is None:
            self._authenticate()
        response = self._post_submit(body)
        if response.status_code == 401:
            log.info("%s: token refused (expired?), authenticating again", self.name)
            self._token = None
            self._authenticate()
            response = self._post_submit(body)
            if response.status_code == 401:
                self._token = None
                raise ForwardError(
                    f"{self.name}: submit: 401 Unauthorized right after a fresh authentication "
                    f"as '{self.username}'"
                )
        return response

    def _post_submit(self, body: dict[str, Any]) -> httpx.Response:
        assert self._token is not None
        return self._request(
            "POST", "submit", params=SUBMIT, json=body, headers={"centreon-auth-token": self._token}
        )

    def _request(self, method: str, what: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._client.request(method, self.url, **kwargs)
        except httpx.HTTPError as error:
            raise ForwardError(
                self._redact(transport_failure(self.name, method, what, error))
            ) from error

    def _authenticate(self) -> None:
        password = get_password(self._password, self.name)
        self._redact.add(password)
        response = self._request(
            "POST",
            "authenticate",
            params=AUTHENTICATE,
            data={"username": self.username, "password": password},
        )
        if response.status_code in (401, 403):
            raise ForwardError(
                f"{self.name}: authentication refused for user '{self.username}' "
                f"(HTTP {response.status_code}): check the username and password"
            )
        if response.status_code != 200:
            raise self._unexpected(response, "authenticate")
        try:
            token = response.json()["authToken"]
        except (ValueError, KeyError, TypeError):
            token = None
        if not isinstance(token, str) or not token:
            raise ForwardError(f"{self.name}: authenticate: reply has no authToken")
        self._redact.add(token)
        self._token = token
        self.logins += 1

    def _unexpected(self, response: httpx.Response, what: str = "submit") -> ForwardError:
        reason = server_message(response)
        return ForwardError(
            self._redact(
                f"{self.name}: {what}: HTTP {response.status_code}"
                + (f": {reason}" if reason else "")
            )
        )


def _result(result: PassiveResult) -> dict[str, str]:
    # The Engine's command takes an integer timestamp; Centreon checks it is numeric.
    return {
        "updatetime": str(int(result.check_time)),
        "host": result.host,
        "service": result.service,
        "status": str(result.status),
        "output": result.output,
        "perfdata": result.perfdata,
    }
