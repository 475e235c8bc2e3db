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
from typing import Any, Final

import httpx

from shared.config import ApiV1Forwarder as ApiV1Config
from workers.forwarders.base import ForwardError, PassiveResult
from workers.forwarders.http_forwarder import (
    DEFAULT_TIMEOUT,
    HttpForwarder,
    secret_source,
)

__all__ = ["ApiV1Forwarder"]

log = logging.getLogger(__name__)

AUTHENTICATE: Final = {"action": "authenticate"}
SUBMIT: Final = {"action": "submit", "object": "centreon_submit_results"}
ACCEPTED: Final = 202
PARTIAL: Final = 206


class ApiV1Forwarder(HttpForwarder):
    """A `Forwarder` for Centreon's REST API v1 `centreon_submit_results`. Synchronous; one
    call at a time (a lock serialises `deliver` and `close`). API v1 has no logout: `close`
    only forgets the token."""

    KIND = "api_v1"
    LOGIN = "authenticate"
    LOGIN_NOUN = "authentication"
    LOGIN_GERUND = "authenticating"
    AUTH_FIELD = "authToken"
    AUTH_HEADER = "centreon-auth-token"
    _log = log

    @classmethod
    def from_config(cls, model: ApiV1Config, *, timeout: float = DEFAULT_TIMEOUT) -> ApiV1Forwarder:
        """Build from a `centreon.forwarders` entry. The password reference is resolved now
        (a missing secret fails fast with `SecretNotFound`) and again at every login."""
        return cls(model.url, model.username, secret_source(str(model.password)), timeout=timeout)

    # --- one endpoint, named by its action ---------------------------------------------------

    def _target(self, what: str) -> str:
        """Every request goes to the one URL; `what` is the action, sent in the query."""
        return self.url

    def _describe(self, method: str, what: str) -> str:
        """Errors name the action alone (`submit`, `authenticate`): the method is always POST."""
        return what

    def _login_succeeded(self, response: httpx.Response) -> bool:
        return response.status_code == 200

    def _login_kwargs(self, password: str) -> dict[str, Any]:
        return {"params": AUTHENTICATE, "data": {"username": self.username, "password": password}}

    # --- delivery ----------------------------------------------------------------------------

    def _deliver_chunk(self, chunk: list[PassiveResult]) -> None:
        body = {"results": [_result(result) for result in chunk]}
        response = self._authorized("POST", "submit", params=SUBMIT, json=body)
        if response.status_code not in (200, PARTIAL):
            raise self._unexpected(response, "POST", "submit")
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
