"""A real local HTTP server playing Centreon's REST API v2 and v1 the way Centreon's own code
behaves (not the way its documentation hopes), for the forwarder tests:
`with CentreonApiFake(known={("mx1", "SMTP-Login"): (12, 34)}) as fake: ...`.

Every behaviour below is one read in Centreon's source (see
../shared/reference/centreon-passive-results.md for where):

API v2 under `/centreon/api/latest` (`fake.url_v2`), `X-AUTH-TOKEN` carrying a login token or
a long-lived API token (`add_api_token`):
    POST /login            200 {"contact":{...},"security":{"token":...}} | 401
    GET  /logout           200, the token is revoked
    no token: 401 {"message":"Authentication Required"}; an unknown, expired or revoked one:
    401 {"message":"Invalid credentials."}
    GET  /monitoring/services?search=&page=&limit=
        paged (limit 10 and page 1 by default, no maximum), names compared without regard to
        case (Centreon's database collation), {"result":[...],"meta":{page, limit, search,
        sort_by, total}}; an unknown search key is a 500 "The parameter X is not allowed";
        a search that is not JSON filters nothing.
    POST /monitoring/resources/submit, in Centreon's order:
        403 without "Reach API realtime"; 500 {"code":500,"message":"[resources[i].field] ..."}
        for a body that breaks SubmitResultResources.json (validated with jsonschema);
        401 (empty body) without the right to submit results; then each resource applied in
        order, stopping at the first unknown id with 404 "Host N not found" (its parent) or
        "Service N not found": the resources before it stay applied. 204 when all are.
API v1 at `/centreon/api/index.php` (`fake.url_v1`):
    POST ?action=authenticate (form) 200 {"authToken":...}; 401 "Authentication failed";
        403 "Unauthorized" for a user without API rights (with `v1_login_checks_rights`,
        the default; Centreon 22.10 lets such a user in and refuses every call instead)
    an unknown, expired or deleted token: 403 "Forbidden"; none: 403 "Unauthorized"
    POST ?action=submit&object=centreon_submit_results: per-result 202/404/400, every
        accepted result applied; 206 when any failed, the list JSON-encoded once more.

Applied results are in `submits_v2` / `submits_v1`, in order, and each as the external command
Centreon writes for the Engine in `engine_commands` (also written, when `command_file` is
given, to a real Nagios core's command file: Centreon passes the output on unescaped).

Knobs: `expire_tokens()`, `grant(realtime=, submit=, api=)`, `add_api_token()`,
`revoke_api_tokens()`, `fail_next(n, status)`, `delay`, `known`, `forget()`, `set_known()`.
Every request is recorded in `requests`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema

V2_PREFIX = "/centreon/api/latest"
V1_PATH = "/centreon/api/index.php"

# centreon_submit_results' check of perfdata (not anchored, like PHP's preg_match).
_PERFDATA = re.compile(r"(('([^'=]+)'|([^'= ]+))=[0-9.-]+[a-zA-Z%/]*(;[0-9.-]*){0,4}[ ]?)+")

# config/json_validator/latest/Centreon/SubmitResult/SubmitResultResources.json
SUBMIT_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-04/schema#",
    "type": "object",
    "required": ["resources"],
    "additionalProperties": False,
    "properties": {
        "resources": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "id", "parent", "status"],
                "additionalProperties": False,
                "properties": {
                    "type": {"type": "string"},
                    "id": {"type": "integer"},
                    "parent": {
                        "type": ["object", "null"],
                        "additionalProperties": False,
                        "required": ["id"],
                        "properties": {"id": {"type": "integer"}},
                    },
                    "status": {"type": "integer", "enum": [0, 1, 2, 3]},
                    "output": {"type": ["string", "null"]},
                    "performance_data": {"type": ["string", "null"]},
                },
            },
        }
    },
}
_SUBMIT_VALIDATOR = jsonschema.Draft4Validator(SUBMIT_SCHEMA)

# MonitoringRepositoryRDB::findServices: the search keys it translates; others are refused.
SERVICE_SEARCH_KEYS = frozenset(
    {"host.id", "host.name", "host.alias", "host.address", "host.last_state_change"}
    | {"host.state", "host_group.id", "poller.id", "service.description"}
    | {"service.display_name", "service.is_acknowledged", "service.last_state_change"}
    | {"service.output", "service.state", "service_group.id", "service.downtime"}
    | {"service.criticality"}
)


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
    api_tokens: set[str] = field(default_factory=set)
    realtime_right: bool = True  # "Reach API realtime" (reach_api_rt)
    submit_right: bool = True  # ACL action "Submit result for a service"
    api_right: bool = True  # v1: reach_api or reach_api_rt
    v1_login_checks_rights: bool = True
    fail_after: int = 0
    fail_next: int = 0
    fail_status: int = 500
    requests: list[RecordedRequest] = field(default_factory=list)
    submits_v2: list[SubmittedV2] = field(default_factory=list)
    submits_v1: list[SubmittedV1] = field(default_factory=list)
    engine_commands: list[str] = field(default_factory=list)


class CentreonApiFake:
    def __init__(
        self,
        *,
        username: str = "api",
        password: str = "Api-S3cret!",
        known: dict[tuple[str, str], tuple[int, int]] | None = None,
        command_file: str | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._state = _State(username, password, dict(known or {}))
        self._command_file = command_file
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
        """Seconds every request waits before it is handled. Like PHP, the fake handles a
        request whose client has gone meanwhile: it is applied all the same."""
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
        """Every login token issued so far expires (Centreon deletes it)."""
        with self._lock:
            self._state.tokens.clear()

    def add_api_token(self) -> str:
        """A long-lived API token (Centreon 24.04+) for the fake's user."""
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._state.api_tokens.add(token)
        return token

    def revoke_api_tokens(self) -> None:
        with self._lock:
            self._state.api_tokens.clear()

    def grant(
        self,
        *,
        realtime: bool | None = None,
        submit: bool | None = None,
        api: bool | None = None,
        v1_login_checks_rights: bool | None = None,
    ) -> None:
        """Change the user's rights: `realtime` ("Reach API realtime"), `submit` (the right
        to submit results), `api` (v1's API access)."""
        with self._lock:
            state = self._state
            state.realtime_right = state.realtime_right if realtime is None else realtime
            state.submit_right = state.submit_right if submit is None else submit
            state.api_right = state.api_right if api is None else api
            if v1_login_checks_rights is not None:
                state.v1_login_checks_rights = v1_login_checks_rights

    def fail_next(self, calls: int, status: int = 500, *, after: int = 0) -> None:
        """The next `calls` requests (any endpoint), once `after` more have been answered,
        get `status`, as a proxy in front of a dead web server answers (502, 503), or a
        crashed PHP (500): nothing applied."""
        with self._lock:
            self._state.fail_after = after
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

    @property
    def engine_commands(self) -> list[str]:
        """`PROCESS_SERVICE_CHECK_RESULT;...` commands, as Centreon writes them for the Engine."""
        with self._lock:
            return list(self._state.engine_commands)

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
            if state.fail_next > 0 and state.fail_after > 0:
                state.fail_after -= 1
                failing = False
            else:
                failing = state.fail_next > 0
            if failing:
                state.fail_next -= 1
                status, body = state.fail_status, {"code": state.fail_status, "message": "Error"}
            elif request.path == V1_PATH:
                status, body = self._v1(state, request)
            elif request.path.startswith(V2_PREFIX + "/"):
                status, body = self._v2(state, request, request.path.removeprefix(V2_PREFIX))
            else:
                status, body = 404, {"code": 404, "message": "No route found"}
            request.status = status
            return status, body

    def _apply(self, state: _State, host: str, service: str, status: object, text: str) -> None:
        """What Centreon writes for the Engine (EngineService::submitServiceResult)."""
        command = f"[{int(time.time())}] PROCESS_SERVICE_CHECK_RESULT;{host};{service};{status};"
        state.engine_commands.append(command + text)
        if self._command_file is not None:
            descriptor = os.open(self._command_file, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(descriptor, (command + text + "\n").encode())
            finally:
                os.close(descriptor)

    def _new_token(self, state: _State) -> str:
        token = secrets.token_hex(16)
        state.tokens.add(token)
        return token

    def _v2(self, state: _State, request: RecordedRequest, route: str) -> tuple[int, Any]:
        if request.method == "POST" and route == "/login":
            try:
                credentials = request.body["security"]["credentials"]
                login, password = credentials["login"], credentials["password"]
            except (KeyError, TypeError):
                return 400, {"code": 400, "message": "Invalid JSON body"}
            if (login, password) != (state.username, state.password):
                return 401, {"code": 401, "message": "Authentication failed"}
            return 200, {
                "contact": {"id": 3, "name": login, "alias": login, "is_admin": False},
                "security": {"token": self._new_token(state)},
            }
        token = request.headers.get("x-auth-token")
        if token is None:
            return 401, {"message": "Authentication Required"}
        if token not in state.tokens and token not in state.api_tokens:
            return 401, {"message": "Invalid credentials."}
        if request.method == "GET" and route == "/logout":
            state.tokens.discard(token)
            return 200, {"message": "Successful logout"}
        if request.method == "GET" and route == "/monitoring/services":
            return self._v2_services(state, request)
        if request.method == "POST" and route == "/monitoring/resources/submit":
            return self._v2_submit(state, request)
        return 404, {"code": 404, "message": "No route found"}

    def _v2_services(self, state: _State, request: RecordedRequest) -> tuple[int, Any]:
        page, limit = request.query.get("page", "1"), request.query.get("limit", "10")
        for name, value in (("page", page), ("limit", limit)):
            if not value.isdigit() or int(value) < 1:
                return 500, {"code": 500, "message": f'The parameter "{name}" must be an integer'}
        try:
            search = json.loads(request.query.get("search", "{}"))
        except ValueError:
            search = {}  # `(array) null`: no filter at all
        terms = search.get("$and", [search]) if isinstance(search, dict) else []
        wanted: dict[str, list[str]] = {}
        for term in terms:
            for key, condition in term.items():
                if key not in SERVICE_SEARCH_KEYS:
                    return 500, {"code": 500, "message": f"The parameter {key} is not allowed"}
                if isinstance(condition, dict) and "$in" in condition:
                    wanted[key] = [str(value) for value in condition["$in"]]
                else:
                    value = condition.get("$eq") if isinstance(condition, dict) else condition
                    wanted[key] = [str(value)]
        matches = []
        for (host, service), (host_id, service_id) in sorted(state.known.items()):
            if not _same_name(wanted.get("host.name"), host):
                continue
            if not _same_name(wanted.get("service.description"), service):
                continue
            matches.append(
                {
                    "id": service_id,
                    "description": service,
                    "display_name": service,
                    "state": 0,
                    "host": {"id": host_id, "name": host, "alias": host, "state": 0},
                }
            )
        first = (int(page) - 1) * int(limit)
        meta = {
            "page": int(page),
            "limit": int(limit),
            "search": search if "$and" in search else {"$and": terms},
            "sort_by": {},
            "total": len(matches),
        }
        return 200, {"result": matches[first : first + int(limit)], "meta": meta}

    def _v2_submit(self, state: _State, request: RecordedRequest) -> tuple[int, Any]:
        if not state.realtime_right:
            return 403, {"code": 403, "message": "You are not authorized to access this resource"}
        body = request.body
        if isinstance(body, str) or body is None:
            return 500, {"code": 500, "message": "Error when decoding your sent data"}
        errors = sorted(_SUBMIT_VALIDATOR.iter_errors(body), key=lambda e: list(e.path))
        if errors:
            message = "".join(f"[{_property_path(error)}] {error.message}\n" for error in errors)
            return 500, {"code": 500, "message": message}
        if not state.submit_right:
            return 401, None
        host_ids = {host_id: host for (host, _), (host_id, _) in state.known.items()}
        services = {ids: name for name, ids in state.known.items()}
        for resource in body["resources"]:
            parent = resource["parent"]["id"] if resource["parent"] else None
            if parent not in host_ids:
                return 404, {"code": 404, "message": f"Host {parent} not found"}
            if (parent, resource["id"]) not in services:
                return 404, {"code": 404, "message": f"Service {resource['id']} not found"}
            output = resource.get("output") or ""
            perfdata = resource.get("performance_data") or ""
            host, service = services[(parent, resource["id"])]
            state.submits_v2.append(
                SubmittedV2(parent, resource["id"], resource["status"], output, perfdata)
            )
            self._apply(state, host, service, resource["status"], f"{output}|{perfdata}")
        return 204, None

    def _v1(self, state: _State, request: RecordedRequest) -> tuple[int, Any]:
        action = request.query.get("action")
        if request.method == "POST" and action == "authenticate":
            form = request.body if isinstance(request.body, dict) else {}
            if (form.get("username"), form.get("password")) != (state.username, state.password):
                return 401, "Authentication failed"
            if state.v1_login_checks_rights and not state.api_right:
                return 403, "Unauthorized"
            return 200, {"authToken": self._new_token(state)}
        token = request.headers.get("centreon-auth-token")
        if token is None:
            return 403, "Unauthorized"
        if token not in state.tokens or not state.api_right:
            return 403, "Forbidden"  # the lookup fails: a user with no rights, refused
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
        self._apply(state, host, service, data["status"], f"{data['output']}|{perfdata}")
        return 202, "The status send to the engine"


def _same_name(wanted: list[str] | None, name: str) -> bool:
    """`$eq` and `$in` as Centreon's database compares names (utf8_general_ci): without
    regard to case or trailing spaces."""
    folded = name.rstrip(" ").casefold()
    return wanted is None or any(each.rstrip(" ").casefold() == folded for each in wanted)


def _property_path(error: jsonschema.ValidationError) -> str:
    """`resources[0].status`, as justinrainbow/json-schema names a property."""
    text = ""
    for part in error.absolute_path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    fake: CentreonApiFake

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and hung up: nothing to report


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes

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
