"""Forward passive results through Centreon's REST API v2 (`/centreon/api/latest`).

- Authenticate with a login (`POST /login`, the token reused across batches; a 401 means it
  died: log in again once and retry) or with a long-lived API token (Centreon 24.04+), sent
  as it is and never replaced. Both go in `X-AUTH-TOKEN`.
- Resolve (host name, service description) to numeric ids with `GET /monitoring/services`
  and keep them in a cache. Centreon compares names without regard to case and pages the
  answer: the entry named exactly is looked for, page after page. A name that resolves to
  nothing is remembered for `unknown_recheck` seconds.
- Submit a chunk with one `POST /monitoring/resources/submit` (204 No Content on success).

What Centreon's code does with that request, and what follows here (see
../shared/reference/centreon-passive-results.md):

- It validates the whole body first: a body that breaks the schema is a 500 naming the
  offending resources (`[resources[3].status] ...`), and nothing was applied. Those results
  are a bug of ours: they are logged with the reply, dropped and counted (`dropped_invalid`),
  and the rest is submitted again.
- It checks the submit right for every resource: a 401 then (after a fresh login, or with an
  API token) is a `CentreonRightsError`: no login can fix it. A 403 means the user lacks
  "Reach API realtime": the same.
- Then it applies the resources one by one, in order, and stops at the first unknown id with
  404 ("Service N not found", "Host N not found"; a service re-created in Centreon has a new
  id): the resources before it were applied. They are settled, never sent again; the unknown
  one is looked up again and submitted with the rest, or dropped as unknown when it is
  unknown still (`dropped_unknown`).

API v2 has no check-time field: the web server stamps its own "now" on every submitted result,
so `PassiveResult.check_time` is not sent. A refresh therefore always resets Centreon's freshness
clock, and a result delayed in the outbox shows the time it reached Centreon.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any, Final, TypeAlias

import httpx

from smtp_checks.consumer.forwarders.base import (
    CentreonRightsError,
    ForwardError,
    PassiveResult,
    Settled,
)
from smtp_checks.consumer.forwarders.engine_text import Reader, for_engine
from smtp_checks.consumer.forwarders.http_forwarder import (
    DEFAULT_TIMEOUT,
    MAX_BATCH,
    HttpForwarder,
    SecretSource,
    is_success,
    secret_source,
    server_message,
)
from smtp_checks.shared.config import ApiV2Forwarder as ApiV2Config

__all__ = ["ApiV2Forwarder"]

log = logging.getLogger(__name__)

UNKNOWN_RECHECK: Final = 300.0  # seconds before a name that resolved to nothing is looked up again
SUBMIT_PATH: Final = "/monitoring/resources/submit"
SERVICES_PATH: Final = "/monitoring/services"
_LOOKUP_GROUP: Final = 100  # names looked up in one request
_LOOKUP_PAGE: Final = 1000  # entries per lookup page (names compare without regard to case)
_LOOKUP_PAGES: Final = 20  # pages looked at before a name counts as unknown
_NOT_FOUND = re.compile(r"\b(Host|Service) (\d+)\b")
_SCHEMA_ERROR = re.compile(r"\[resources\[(\d+)\]")

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
    TOKEN_REFUSED = frozenset({401})
    MISSING_RIGHT = (
        "the right to submit results (ACL action 'Submit result for a service', or to be an "
        "administrator)"
    )
    _log = log

    def __init__(
        self,
        url: str,
        username: str | None = None,
        password: SecretSource | None = None,
        *,
        token: SecretSource | None = None,
        verify_tls: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        unknown_recheck: float = UNKNOWN_RECHECK,
        max_batch: int = MAX_BATCH,
        reader: Reader = Reader.CENTREON,
    ) -> None:
        # Requests name paths below the API root (`/login`, `/monitoring/services`).
        root = url.rstrip("/")
        super().__init__(
            root,
            username,
            password,
            token=token,
            verify_tls=verify_tls,
            timeout=timeout,
            max_batch=max_batch,
            base_url=root,
            reader=reader,
        )
        self._unknown_recheck = unknown_recheck
        self._ids: dict[tuple[str, str], Ids] = {}
        self._unknown: dict[tuple[str, str], float] = {}  # name -> monotonic time of the lookup
        self.lookups = 0

    @classmethod
    def from_config(cls, model: ApiV2Config, *, timeout: float = DEFAULT_TIMEOUT) -> ApiV2Forwarder:
        """Build from a `centreon.forwarders` entry. A secret reference is resolved now (a
        missing secret fails fast with `SecretNotFound`) and again at every use."""
        if model.token is not None:
            return cls(
                model.url,
                token=secret_source(str(model.token)),
                verify_tls=model.verify_tls,
                timeout=timeout,
                reader=model.engine,
            )
        assert model.password is not None  # the config refuses one without the other
        return cls(
            model.url,
            model.username,
            secret_source(str(model.password)),
            verify_tls=model.verify_tls,
            timeout=timeout,
            reader=model.engine,
        )

    def counters(self) -> dict[str, int]:
        return {**super().counters(), "lookups": self.lookups}

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

    def _deliver_chunk(self, chunk: list[PassiveResult], settled: Settled) -> None:
        todo = list(range(len(chunk)))  # positions not settled yet, in order
        looked_up_again: set[int] = set()
        while todo:
            entries = self._resolved(chunk, todo, settled)
            todo = [position for position, _ in entries]
            if not entries:
                return
            response = self._call(
                "POST",
                SUBMIT_PATH,
                body={"resources": [self._resource(chunk[p], ids) for p, ids in entries]},
            )
            if is_success(response):
                self.delivered += len(entries)
                settled(todo)
                return
            if response.status_code == 404:
                todo = self._after_unknown(chunk, entries, response, looked_up_again, settled)
            elif (invalid := _schema_errors(response, len(entries))) is not None:
                todo = self._after_invalid(chunk, entries, invalid, response, settled)
            else:
                raise self._unexpected(response, "POST", SUBMIT_PATH)

    def _resolved(
        self, chunk: list[PassiveResult], todo: list[int], settled: Settled
    ) -> list[tuple[int, Ids]]:
        """The positions of `todo` with their ids; those that resolve to nothing are dropped
        (and settled) here."""
        entries: list[tuple[int, Ids]] = []
        unknown: list[int] = []
        resolved = self._resolve_many([(chunk[p].host, chunk[p].service) for p in todo])
        for position in todo:
            ids = resolved[(chunk[position].host, chunk[position].service)]
            if ids is None:
                self._drop_unknown(chunk[position])
                unknown.append(position)
            else:
                entries.append((position, ids))
        if unknown:
            settled(unknown)
        return entries

    def _after_unknown(
        self,
        chunk: list[PassiveResult],
        entries: list[tuple[int, Ids]],
        response: httpx.Response,
        looked_up_again: set[int],
        settled: Settled,
    ) -> list[int]:
        """Centreon applied the entries before the first unknown id, then stopped: settle
        those, look the unknown one up again (once), and go on from there."""
        reason = self._redact(server_message(response))
        culprit = self._culprit(chunk, entries, reason)
        if culprit is None:
            raise ForwardError(
                f"{self.name}: POST {SUBMIT_PATH}: 404 ({reason}) names no resource of the "
                "batch; it is kept"
            )
        self.delivered += culprit
        settled([position for position, _ in entries[:culprit]])
        position = entries[culprit][0]
        rest = [p for p, _ in entries[culprit + 1 :]]
        if position in looked_up_again:
            self._drop_unknown(chunk[position], reason)
            settled([position])
            return rest
        log.info(
            "%s: %s/%s refused as unknown (%s): looking it up again",
            self.name, chunk[position].host, chunk[position].service, reason,
        )  # fmt: skip
        looked_up_again.add(position)
        return [position, *rest]

    def _culprit(
        self, chunk: list[PassiveResult], entries: list[tuple[int, Ids]], reason: str
    ) -> int | None:
        """Which entry Centreon's 404 is about: by the id its message names ("Service 12
        not found", in whatever language: the number stays), else the first entry whose ids
        changed when looked up again. Every id it may concern is forgotten."""
        named = _NOT_FOUND.search(reason)
        kinds = [named.group(1)] if named else ["Service", "Host"]
        numbers = [int(named.group(2))] if named else [int(n) for n in re.findall(r"\d+", reason)]
        for kind in kinds:
            for number in numbers:
                column = 1 if kind == "Service" else 0
                hits = [index for index, (_, ids) in enumerate(entries) if ids[column] == number]
                if hits:
                    for _, ids in entries:
                        if ids[column] == number:
                            self._forget(chunk, entries, ids)
                    return hits[0]
        for index, (position, ids) in enumerate(entries):
            key = (chunk[position].host, chunk[position].service)
            self._ids.pop(key, None)
            if self._resolve(*key) != ids:
                return index
        return None

    def _forget(self, chunk: list[PassiveResult], entries: list[tuple[int, Ids]], ids: Ids) -> None:
        for position, entry_ids in entries:
            if entry_ids == ids or entry_ids[0] == ids[0]:
                self._ids.pop((chunk[position].host, chunk[position].service), None)

    def _after_invalid(
        self,
        chunk: list[PassiveResult],
        entries: list[tuple[int, Ids]],
        invalid: set[int],
        response: httpx.Response,
        settled: Settled,
    ) -> list[int]:
        """Centreon refused the body for these entries, before applying any: a bug of ours.
        Drop them, loudly; submit the rest again."""
        reply = self._redact(server_message(response, limit=1000))
        for index in sorted(invalid):
            result = chunk[entries[index][0]]
            self.dropped_invalid += 1
            log.error(
                "%s: Centreon refused the result for %s/%s as invalid (HTTP %d: %s); dropped: "
                "status %d, output %r, perfdata %r",
                self.name, result.host, result.service, response.status_code, reply,
                result.status, result.output, result.perfdata,
            )  # fmt: skip
        settled([entries[index][0] for index in sorted(invalid)])
        return [position for index, (position, _) in enumerate(entries) if index not in invalid]

    def _drop_unknown(self, result: PassiveResult, reason: str = "") -> None:
        self.dropped_unknown += 1
        log.warning(
            "%s: no service %r on host %r in Centreon's real-time data%s; result dropped",
            self.name,
            result.service,
            result.host,
            f" ({reason})" if reason else "",
        )

    def _resource(self, result: PassiveResult, ids: Ids) -> dict[str, Any]:
        host_id, service_id = ids
        return {
            "type": "service",
            "id": service_id,
            "parent": {"id": host_id},
            "status": result.status,
            "output": for_engine(result.output, self.reader),
            "performance_data": for_engine(result.perfdata, self.reader),
        }

    # --- name -> id resolution ---------------------------------------------------------------

    def _resolve(self, host: str, service: str) -> Ids | None:
        return self._resolve_many([(host, service)])[(host, service)]

    def _resolve_many(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Ids | None]:
        """The ids of each (host, service): from the cache, else looked up, many names in
        one request."""
        now = time.monotonic()
        wanted = [
            key
            for key in dict.fromkeys(keys)
            if key not in self._ids
            and now - self._unknown.get(key, -self._unknown_recheck) >= self._unknown_recheck
        ]
        for start in range(0, len(wanted), _LOOKUP_GROUP):
            group = wanted[start : start + _LOOKUP_GROUP]
            found = self._look_up(group)
            for key in group:
                if key in found:
                    self._ids[key] = found[key]
                    self._unknown.pop(key, None)
                else:
                    self._unknown[key] = now
        return {key: self._ids.get(key) for key in keys}

    def _look_up(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Ids]:
        """One search for every name of `keys`, page after page. Centreon's database compares
        names without regard to case (the Engine does not), and the search matches every host
        with every service of the lists: only the entries named exactly are kept."""
        self.lookups += 1
        hosts = sorted({host for host, _ in keys})
        services = sorted({service for _, service in keys})
        search = {
            "$and": [
                {"host.name": _matching(hosts)},
                {"service.description": _matching(services)},
            ]
        }
        params = {"search": json.dumps(search, separators=(",", ":")), "limit": str(_LOOKUP_PAGE)}
        wanted, found = set(keys), {}
        for page in range(1, _LOOKUP_PAGES + 1):
            response = self._call("GET", SERVICES_PATH, params={**params, "page": str(page)})
            if response.status_code != 200:
                raise self._unexpected(response, "GET", SERVICES_PATH)
            entries, more = self._entries(response, page)
            found.update({key: ids for key, ids in entries if key in wanted})
            if not more or wanted <= set(found):
                return found
        return found

    def _entries(
        self, response: httpx.Response, page: int
    ) -> tuple[list[tuple[tuple[str, str], Ids]], bool]:
        """The ((host, service), ids) of one page, and whether more pages follow."""
        try:
            data = response.json()
            items = data["result"]
            total = int(data.get("meta", {}).get("total", len(items)))
            entries = [
                (
                    (item["host"]["name"], item["description"]),
                    (int(item["host"]["id"]), int(item["id"])),
                )
                for item in items
            ]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ForwardError(
                f"{self.name}: GET {SERVICES_PATH}: unexpected reply "
                f"(no result[].id, description, host.id, host.name)"
            ) from None
        return entries, page * _LOOKUP_PAGE < total

    # --- HTTP --------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        """An authenticated request (see `_authorized`). A 403 is a `CentreonRightsError`;
        a 5xx other than a schema error is a ForwardError: worth retrying later."""
        response = self._authorized(method, path, json=body, params=params)
        if response.status_code == 403:
            raise CentreonRightsError(
                self._redact(
                    f"{self.name}: {method} {path}: HTTP 403 ({server_message(response)}): "
                    f"user '{self.username or 'of the API token'}' lacks the right "
                    "'Reach API realtime' (or to be an administrator)"
                )
            )
        if response.status_code >= 500 and _schema_errors(response, None) is None:
            raise self._unexpected(response, method, path)
        return response


def _matching(names: list[str]) -> dict[str, object]:
    return {"$eq": names[0]} if len(names) == 1 else {"$in": names}


def _schema_errors(response: httpx.Response, count: int | None) -> set[int] | None:
    """The indices of the resources a 500 says break the submit schema (`[resources[3].status]
    ...`), or None when it is not such a reply."""
    if response.status_code != 500:
        return None
    indices = {int(index) for index in _SCHEMA_ERROR.findall(server_message(response, 10_000))}
    if not indices or (count is not None and max(indices) >= count):
        return None
    return indices
