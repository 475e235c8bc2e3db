"""Forward passive results through Centreon's REST API v1 (`/centreon/api/index.php`), for
platforms without API v2.

- `POST ?action=authenticate` with form fields `username`, `password` returns `authToken`,
  sent back in the `centreon-auth-token` header. Centreon answers a token it no longer knows
  (expired, deleted) with 403 "Forbidden" (`www/api/index.php`: the token lookup fails, the
  router refuses): a 401 or 403 means authenticate again, once, and retry. The same refusal
  right after a fresh authentication means the user lacks the "Reach API Realtime" right
  (Centreon 22.10 lets such a user authenticate): a `CentreonRightsError`, retried with
  backoff, logged once.
- `POST ?action=submit&object=centreon_submit_results` takes results by names, each with its
  own `updatetime` (the check time, which the Engine records as `last_check`).
- The reply carries one code per result, in order: 202 accepted, 404 unknown host or service,
  400 invalid (status, timestamp or perfdata format). Centreon writes every accepted result
  even when others fail; then the HTTP status is 206, and Centreon (`sendJson` on a
  `RestPartialContent`) may send the list JSON-encoded a second time: both forms are read.

Accepted, 404 and 400 results are settled (the last two logged and counted,
`dropped_unknown`, `dropped_invalid`), so none is ever sent twice. Any other per-result code
leaves that result for a retry, unless a later result of the same service was accepted: an
older state sent after it would roll the service back, so it is settled as superseded.
Anything else (no answer, timeout, 5xx, a request-level 400 such as "Can't open centcore
pipe") raises `ForwardError`, whose message never contains the password or the token.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Final

import httpx

from smtp_checks.consumer.forwarders.base import ForwardError, PassiveResult, Settled
from smtp_checks.consumer.forwarders.engine_text import for_engine
from smtp_checks.consumer.forwarders.http_forwarder import (
    DEFAULT_TIMEOUT,
    HttpForwarder,
    secret_source,
    server_message,
)
from smtp_checks.shared.config import ApiV1Forwarder as ApiV1Config

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
    TOKEN_REFUSED = frozenset({401, 403})
    MISSING_RIGHT = "the right 'Reach API Realtime' (or to be an administrator)"
    _log = log

    @classmethod
    def from_config(cls, model: ApiV1Config, *, timeout: float = DEFAULT_TIMEOUT) -> ApiV1Forwarder:
        """Build from a `centreon.forwarders` entry. The password reference is resolved now
        (a missing secret fails fast with `SecretNotFound`) and again at every login."""
        return cls(
            model.url,
            model.username,
            secret_source(str(model.password)),
            timeout=timeout,
            reader=model.engine,
        )

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

    def _login_refused(self, response: httpx.Response) -> ForwardError:
        # Newer Centreon: 401 "Authentication failed" for a wrong password, 403
        # "Unauthorized" for a user without API rights; 22.10: 403 "Invalid credentials".
        reason = self._redact(server_message(response))
        return ForwardError(
            f"{self.name}: authentication refused for user '{self.username}' "
            f"(HTTP {response.status_code}{f': {reason}' if reason else ''}): check the "
            f"username and password, and that the user has {self.MISSING_RIGHT}"
        )

    # --- delivery ----------------------------------------------------------------------------

    def _deliver_chunk(self, chunk: list[PassiveResult], settled: Settled) -> None:
        body = {"results": [self._result(result) for result in chunk]}
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
            settled(range(len(chunk)))
            return
        done: list[int] = []
        failed: list[str] = []
        accepted_later: set[tuple[str, str]] = set()
        for position in reversed(range(len(chunk))):
            result, (code, message) = chunk[position], codes[position]
            key = (result.host, result.service)
            if code == ACCEPTED:
                self.delivered += 1
                accepted_later.add(key)
            elif code == 404:
                self._drop(result, message, "does not know", unknown=True)
            elif code == 400:
                self._drop(result, message, "refused the result for", unknown=False)
            elif key in accepted_later:
                log.info("%s: %s/%s superseded by a later result", self.name, *key)
            else:
                failed.append(f"{result.host}/{result.service}: {code} {message}")
                continue
            done.append(position)
        settled(sorted(done))
        if failed:
            raise ForwardError(
                self._redact(
                    f"{self.name}: submit: {len(failed)} result(s) failed on Centreon's "
                    f"side ({'; '.join(reversed(failed[-3:]))}); they are kept"
                )
            )

    def _drop(self, result: PassiveResult, message: str, verb: str, *, unknown: bool) -> None:
        if unknown:
            self.dropped_unknown += 1
        else:
            self.dropped_invalid += 1
        log.warning(
            "%s: Centreon %s %s/%s (%s); result dropped",
            self.name, verb, result.host, result.service, message,
        )  # fmt: skip

    def _result(self, result: PassiveResult) -> dict[str, str]:
        # The Engine's command takes an integer timestamp; Centreon checks it is numeric.
        return {
            "updatetime": str(int(result.check_time)),
            "host": result.host,
            "service": result.service,
            "status": str(result.status),
            "output": for_engine(result.output, self.reader),
            "perfdata": for_engine(result.perfdata, self.reader),
        }

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
