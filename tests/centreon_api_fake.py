"""A real local HTTP server playing Centreon's REST API v2 and v1 as documented, for the
forwarder tests: `with CentreonApiFake(known={("mx1", "SMTP-Login"): (12, 34)}) as fake: ...`.

API v2 under `/centreon/api/latest` (`fake.url_v2`):
    POST /login                       {"security":{"credentials":{"login","password"}}}
                                      -> 200 {"contact":{...},"security":{"token":...}} | 401
    GET  /logout                      -> 200, the token is revoked
    GET  /monitoring/services?search= -> 200 {"result":[{"id","description","host":{"id","name"}}],
                                                "meta":{...}}
    POST /monitoring/resources/submit {"resources":[{"type":"service","id","parent":{"id"},
                                                     "status","output","performance_data"}]}
                                      -> 204 | 400 (malformed) | 404 (an unknown resource)
API v1 at `/centreon/api/index.php` (`fake.url_v1`):
    POST ?action=authenticate (form username, password) -> 200 {"authToken":...} | 401
    POST ?action=submit&object=centreon_submit_results {"results":[...]}
        -> 200 {"results":[{"code":202,...}]}, or 206 when any result failed, with the list
           JSON-encoded a second time as a JSON string (what Centreon's sendJson does).
Authenticated calls without a valid token get 401.

Knobs: `expire_tokens()`, `reject_tokens(n)`, `fail_next(n, status)`, `delay`, `known`,
`username` / `password`. Every request is recorded in `requests` (and `submits_v2` /
`submits_v1` hold the results the fake accepted, in order).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

V2_PREFIX = "/centreon/api/latest"
V1_PATH = "/centreon/api/index.php"

# centreon_submit_results' check of perfdata (not anchored, like PHP's preg_match).
_PERFDATA = re.compile(r"(('([^'=]+)'|([^'= ]+))=[0-9.-]+[a-zA-Z%/]*(;[0-9.-]*){0,4}[ ]?)+")


@dataclass
class RecordedRequest:
    method: str
    path: str  # without the query string
    query: dict[str, str]
    headers: dict[str, str]  # names in lower case
    body: Any  # parsed JSON, a dict of form fields, or None
    status: int = 0  # what the fake answered


@dataclass
class SubmittedV2:
    host_id: int
    service_id: int
    status: int
    output: str
    performance_data: str


@dataclass
class SubmittedV1:
    updatetime: str
    host: str
    service: str
    status: str
    output: str
    perfdata: str


@dataclass
class _State:
    username: str
    password: str
    known: dict[tuple[str, str], tuple[int, int]]
    delay: float = 0.0
    tokens: set[str] = field(default_factory=set)
    reject_tokens: int = 0
    fail_next: int = 0
    fail_status: int = 500
    requests: list[RecordedRequest] = field(default_factory=list)
    submits_v2: list[SubmittedV2] = field(default_factory=list)
    submits_v1: list[SubmittedV1] = field(default_factory=list)


class CentreonApiFake:
    def __init__(
        self,
        *,
        username: str = "api",
        password: str = "Api-S3cret!",
        known: dict[tuple[str, str], tuple[int, int]] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._state = _State(username, password, dict(known or {}))
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> CentreonApiFake:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.delay = 0.0
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> CentreonApiFake:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url_v2(self) -> str:
        return f"http://127.0.0.1:{self.port}{V2_PREFIX}"

    @property
    def url_v1(self) -> str:
        return f"http://127.0.0.1:{self.port}{V1_PATH}"

    # --- knobs -------------------------------------------------------------------------------

    @property
    def username(self) -> str:
        return self._state.username

    @property
    def password(self) -> str:
        return self._state.password

    @password.setter
    def password(self, value: str) -> None:
        with self._lock:
            self._state.password = value

    @property
    def delay(self) -> float:
        """Seconds every response waits before it is sent (for timeouts)."""
        return self._state.delay

    @delay.setter
    def delay(self, seconds: float) -> None:
        with self._lock:
            self._state.delay = seconds

    def set_known(self, host: str, service: str, host_id: int, service_id: int) -> None:
        with self._lock:
            self._state.known[(host, service)] = (host_id, service_id)

    def forget(self, host: str, service: str) -> None:
        """The service is deleted in Centreon: its ids (and name) are unknown from now on."""
        with self._lock:
            self._state.known.pop((host, service), None)

    def expire_tokens(self) -> None:
        """Every token issued so far expires: calls with one get 401."""
        with self._lock:
            self._state.tokens.clear()

    def reject_tokens(self, calls: int) -> None:
        """The next `calls` authenticated calls get 401 whatever their token."""
        with self._lock:
            self._state.reject_tokens = calls

    def fail_next(self, calls: int, status: int = 500) -> None:
        """The next `calls` requests (any endpoint) get `status`."""
        with self._lock:
            self._state.fail_next = calls
            self._state.fail_status = status

    # --- what happened -----------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._state.requests)

    def calls(self, method: str, path: str) -> list[RecordedRequest]:
        """Recorded requests to `path` (relative to the API's root for v2, e.g. `/login`; for
        v1, the `action` value, e.g. `authenticate`)."""
        found = []
        for request in self.requests:
            if request.path == V1_PATH:
                name = request.query.get("action", "")
            else:
                name = request.path.removeprefix(V2_PREFIX)
            if request.method == method and name == path:
                found.append(request)
        return found

    @property
    def submits_v2(self) -> list[SubmittedV2]:
        with self._lock:
            return list(self._state.submits_v2)

    @property
    def submits_v1(self) -> list[SubmittedV1]:
        with self._lock:
            return list(self._state.submits_v1)

    # --- the APIs (called from the handler threads) --------------------------------------------

    def handle(self, request: RecordedRequest) -> tuple[int, Any]:
        """(status, JSON-able body or None) for one request; records it."""
        with self._lock:
            self._state.requests.append(request)
            delay = self._state.delay
        if delay:
            time.sleep(delay)
        with self._lock:
            state = self._state
            if state.fail_next > 0:
                state.fail_next -= 1
                status, body = (
                    state.fail_status,
                    {
                        "code": state.fail_status,
                        "message": "Internal error",
                    },
                )
            elif request.path == V1_PATH:
                status, body = self._v1(state, request)
            elif request.path.startswith(V2_PREFIX + "/"):
                status, body = self._v2(state, request, request.path.removeprefix(V2_PREFIX))
            else:
                status, body = 404, {"code": 404, "message": "No route found"}
            request.status = status
            return status, body

    def _authorised(self, state: _State, token: str | None) -> bool:
        if state.reject_tokens > 0:
            state.reject_tokens -= 1
            return False
        return token is not None and token in state.tokens

    def _new_token(self, state: _State) -> str:
        token = secrets.token_hex(16)
        state.tokens.add(token)
        return token

    def _v2(self, state: _State, request: RecordedRequest, route: str) -> tuple[int, Any]:
        unauthorised = 401, {"code": 401, "message": "Invalid credentials"}
        if request.method == "POST" and route == "/login":
            try:
                credentials = request.body["security"]["credentials"]
                login, password = credentials["login"], credentials["password"]
            except (KeyError, TypeError):
                return 400, {"code": 400, "message": "Invalid JSON body"}
            if (login, password) != (state.username, state.password):
                return 401, {"code": 401, "message": "Authentication failed"}
            token = self._new_token(state)
            return 200, {
                "contact": {"id": 3, "name": login, "alias": login, "is_admin": False},
                "security": {"token": token},
            }
        if not self._authorised(state, request.headers.get("x-auth-token")):
            return unauthorised
        if request.method == "GET" and route == "/logout":
            state.tokens.discard(request.headers.get("x-auth-token", ""))
            return 200, {"message": "Successful logout"}
        if request.method == "GET" and route == "/monitoring/services":
            return self._v2_services(state, request)
        if request.method == "POST" and route == "/monitoring/resources/submit":
            return self._v2_submit(state, request)
        return 404, {"code": 404, "message": "No route found"}

    def _v2_services(self, state: _State, request: RecordedRequest) -> tuple[int, Any]:
        try:
            search = json.loads(request.query.get("search", "{}"))
            terms = search.get("$and", [search])
            wanted: dict[str, str] = {}
            for term in terms:
                for key, condition in term.items():
                    wanted[key] = condition["$eq"] if isinstance(condition, dict) else condition
        except (ValueError, AttributeError, KeyError, TypeError):
            return 400, {"code": 400, "message": "Invalid search"}
        result = []
        for (host, service), (host_id, service_id) in sorted(state.known.items()):
            if wanted.get("host.name", host) != host:
                continue
            if wanted.get("service.description", service) != service:
                continue
            result.append(
                {
                    "id": service_id,
                    "description": service,
                    "display_name": service,
                    "state": 0,
                    "host": {"id": host_id, "name": host, "alias": host, "state": 0},
                }
            )
        meta = {"page": 1, "limit": 10, "search": search, "sort_by": {}, "total": len(result)}
        return 200, {"result": result[:10], "meta": meta}

    def _v2_submit(self, state: _State, request: RecordedRequest) -> tuple[int, Any]:
        by_ids = {ids: name for name, ids in state.known.items()}
        accepted: list[SubmittedV2] = []
        try:
            resources = request.body["resources"]
            for resource in resources:
                if resource["type"] != "service":
                    raise ValueError("only services in this fake")
                status = resource["status"]
                if not isinstance(status, int) or not 0 <= status <= 3:
                    raise ValueError(f"status {status!r} is not valid")
                if not isinstance(resource["output"], str):
                    raise ValueError("output must be a string")
                ids = (int(resource["parent"]["id"]), int(resource["id"]))
                if ids not in by_ids:
                    return 404, {"code": 404, "message": f"Service {ids[1]} not found"}
                accepted.append(
                    SubmittedV2(
                        ids[0],
                        ids[1],
                        status,
                        resource["output"],
                        resource.get("performance_data", ""),
                    )
                )
        except (KeyError, TypeError, ValueError) as error:
            return 400, {"code": 400, "message": f"Invalid resource: {error}"}
        state.submits_v2.extend(accepted)
        return 204, None

    def _v1(self, state: _State, request: RecordedRequest) -> tuple[int, Any]:
        action = request.query.get("action")
        if request.method == "POST" and action == "authenticate":
            form = request.body if isinstance(request.body, dict) else {}
            if (form.get("username"), form.get("password")) != (state.username, state.password):
                return 401, "Bad credentials"
            return 200, {"authToken": self._new_token(state)}
        if not self._authorised(state, request.headers.get("centreon-auth-token")):
            return 401, "Unauthorized"
        if request.method == "POST" and action == "submit":
            if request.query.get("object") != "centreon_submit_results":
                return 404, "Method not found"
            return self._v1_submit(state, request)
        return 400, "Bad parameters"

    def _v1_submit(self, state: _State, request: RecordedRequest) -> tuple[int, Any]:
        body = request.body
        if not isinstance(body, dict) or not isinstance(body.get("results"), list):
            return 400, "Bad arguments - Cannot find result list"
        hosts = {host for host, _ in state.known}
        results = []
        failed = False
        for data in body["results"]:
            code, message = self._v1_one(state, hosts, data)
            results.append({"code": code, "message": message})
            failed = failed or code != 202
        if failed:
            return 206, json.dumps({"results": results})
        return 200, {"results": results}

    def _v1_one(self, state: _State, hosts: set[str], data: Any) -> tuple[int, str]:
        if not isinstance(data, dict) or not all(
            data.get(key) not in (None, "") for key in ("host", "status", "updatetime")
        ):
            return 400, "Missing argument."
        if "output" not in data:
            return 400, "Missing argument."
        host, service = data["host"], data.get("service", "")
        if host not in hosts:
            return 404, "The host is not present."
        if service and (host, service) not in state.known:
            return 404, "The service is not present."
        if str(data["status"]).lower() not in {"0", "1", "2", "3", "ok", "warning", "critical"}:
            return 400, "Bad status word."
        if not str(data["updatetime"]).isdigit():
            return 400, "The timestamp is not a integer."
        perfdata = data.get("perfdata", "")
        if perfdata and not _PERFDATA.search(str(perfdata)):
            return 400, "The format of performance data is not valid."
        state.submits_v1.append(
            SubmittedV1(
                str(data["updatetime"]),
                host,
                service,
                str(data["status"]),
                str(data["output"]),
                str(perfdata),
            )
        )
        return 202, "The status send to the engine"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    fake: CentreonApiFake

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and hung up: nothing to report


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        headers = {key.lower(): value for key, value in self.headers.items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body: Any = None
        content_type = headers.get("content-type", "")
        if raw and content_type.startswith("application/json"):
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        elif raw and content_type.startswith("application/x-www-form-urlencoded"):
            form = parse_qs(raw.decode("utf-8"), keep_blank_values=True)
            body = {key: values[-1] for key, values in form.items()}
        elif raw:
            body = raw.decode("utf-8", "replace")
        request = RecordedRequest(self.command, parts.path, query, headers, body)
        status, payload = self.server.fake.handle(request)
        data = b"" if payload is None else json.dumps(payload).encode()
        try:
            self.send_response(status)
            if payload is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client gave up (timeout) and closed the connection

    do_GET = _handle
    do_POST = _handle
