"""The Centreon REST API v2 and v1 forwarders against a real local HTTP server playing both
APIs (tests/centreon_api_fake.py): no mock of httpx anywhere."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from smtp_checks.consumer.forwarders.api_v1 import ApiV1Forwarder
from smtp_checks.consumer.forwarders.api_v2 import ApiV2Forwarder
from smtp_checks.consumer.forwarders.base import (
    CentreonRightsError,
    Forwarder,
    ForwardError,
    PassiveResult,
)
from smtp_checks.shared.config import ApiV1Forwarder as ApiV1Config
from smtp_checks.shared.config import ApiV2Forwarder as ApiV2Config
from smtp_checks.shared.config import SecretRef
from smtp_checks.shared.secrets import SecretNotFound
from tests.centreon_api_fake import V2_PREFIX, CentreonApiFake, SubmittedV1, SubmittedV2
from tests.passive_results import passive

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

KNOWN = {
    ("mx1", "SMTP-Login"): (12, 101),
    ("mx1", "SMTP-Message"): (12, 102),
    ("mx2", "SMTP-Login"): (13, 201),
}
PASSWORD = "Api-S3cret!"
CHECK_TIME = 1_700_000_000.75


def result(
    host: str = "mx1",
    service: str = "SMTP-Login",
    status: int = 0,
    output: str = "OK: Response time 0.005 second(s)",
    perfdata: str = "'time'=0.005s;;;0;",
) -> PassiveResult:
    return passive(host, service, status, output, perfdata, CHECK_TIME)


@pytest.fixture
def fake() -> Iterator[CentreonApiFake]:
    with CentreonApiFake(username="api", password=PASSWORD, known=KNOWN) as server:
        yield server


@pytest.fixture
def v2(fake: CentreonApiFake) -> Iterator[ApiV2Forwarder]:
    forwarder = ApiV2Forwarder(fake.url_v2, "api", PASSWORD, timeout=2.0)
    yield forwarder
    forwarder.close()


@pytest.fixture
def v1(fake: CentreonApiFake) -> Iterator[ApiV1Forwarder]:
    forwarder = ApiV1Forwarder(fake.url_v1, "api", PASSWORD, timeout=2.0)
    yield forwarder
    forwarder.close()


def refused_url(path: str) -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def test_both_satisfy_the_forwarder_protocol(
    fake: CentreonApiFake, v2: ApiV2Forwarder, v1: ApiV1Forwarder
) -> None:
    forwarders: list[Forwarder] = [v2, v1]
    assert [f.name for f in forwarders] == [
        f"api_v2:127.0.0.1:{fake.port}",
        f"api_v1:127.0.0.1:{fake.port}",
    ]


# --- API v2 ------------------------------------------------------------------------------------


def test_v2_logs_in_once_and_reuses_the_token(fake: CentreonApiFake, v2: ApiV2Forwarder) -> None:
    for _ in range(3):
        v2.deliver([result()])
    logins = fake.calls("POST", "/login")
    assert len(logins) == 1
    assert logins[0].body == {"security": {"credentials": {"login": "api", "password": PASSWORD}}}
    submits = fake.calls("POST", "/monitoring/resources/submit")
    assert len(submits) == 3
    assert len({s.headers["x-auth-token"] for s in submits}) == 1
    assert all(s.status == 204 for s in submits)
    assert v2.logins == 1
    assert v2.delivered == 3


def test_v2_batched_submit_body_is_exactly_as_documented(
    fake: CentreonApiFake, v2: ApiV2Forwarder
) -> None:
    batch = [
        result("mx2", "SMTP-Login", 2, "CRITICAL: cannot connect", ""),
        result("mx1", "SMTP-Login", 0),
        result(
            "mx1", "SMTP-Message", 1, "WARNING: Response time 3.1 second(s)", "'time'=3.1s;2;5;0;"
        ),
    ]
    v2.deliver(batch)
    [submit] = fake.calls("POST", "/monitoring/resources/submit")
    assert submit.headers["content-type"] == "application/json"
    assert submit.body == {
        "resources": [
            {
                "type": "service",
                "id": 201,
                "parent": {"id": 13},
                "status": 2,
                "output": "CRITICAL: cannot connect",
                "performance_data": "",
            },
            {
                "type": "service",
                "id": 101,
                "parent": {"id": 12},
                "status": 0,
                "output": "OK: Response time 0.005 second(s)",
                "performance_data": "'time'=0.005s;;;0;",
            },
            {
                "type": "service",
                "id": 102,
                "parent": {"id": 12},
                "status": 1,
                "output": "WARNING: Response time 3.1 second(s)",
                "performance_data": "'time'=3.1s;2;5;0;",
            },
        ]
    }
    # No check-time field: API v2 stamps the web server's own time.
    assert [s.service_id for s in fake.submits_v2] == [201, 101, 102]


def test_v2_resolves_names_once_per_service_many_in_one_request(
    fake: CentreonApiFake, v2: ApiV2Forwarder
) -> None:
    for _ in range(3):
        v2.deliver([result("mx1", "SMTP-Login"), result("mx1", "SMTP-Message")])
    v2.deliver([result("mx2", "SMTP-Login")])
    lookups = fake.calls("GET", "/monitoring/services")
    searches = [json.loads(lookup.query["search"]) for lookup in lookups]
    assert searches == [
        {
            "$and": [
                {"host.name": {"$eq": "mx1"}},
                {"service.description": {"$in": ["SMTP-Login", "SMTP-Message"]}},
            ]
        },
        {"$and": [{"host.name": {"$eq": "mx2"}}, {"service.description": {"$eq": "SMTP-Login"}}]},
    ]
    assert v2.lookups == 2
    assert [s.service_id for s in fake.submits_v2] == [101, 102] * 3 + [201]


def test_v2_logs_in_again_on_401(
    fake: CentreonApiFake, v2: ApiV2Forwarder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    v2.deliver([result()])
    first_token = fake.calls("POST", "/monitoring/resources/submit")[0].headers["x-auth-token"]
    fake.expire_tokens()
    v2.deliver([result()])
    assert len(fake.calls("POST", "/login")) == 2
    submits = fake.calls("POST", "/monitoring/resources/submit")
    assert [s.status for s in submits] == [204, 401, 204]
    assert submits[2].headers["x-auth-token"] != first_token
    assert len(fake.submits_v2) == 2
    assert "logging in again" in caplog.text
    for secret in (PASSWORD, first_token, submits[2].headers["x-auth-token"]):
        assert secret not in caplog.text


def test_v2_refused_after_a_fresh_login_is_a_rights_error_not_a_login_loop(
    fake: CentreonApiFake, v2: ApiV2Forwarder
) -> None:
    v2.deliver([result()])
    fake.grant(submit=False)  # Centreon: 401, empty body, for a user without the submit right
    with pytest.raises(CentreonRightsError, match="401") as caught:
        v2.deliver([result()])
    assert "right to submit results" in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert len(fake.calls("POST", "/login")) == 2  # one re-login, not a loop
    with pytest.raises(CentreonRightsError):
        v2.deliver([result()])  # the retry logs in once and stops there
    assert len(fake.calls("POST", "/login")) == 3
    fake.grant(submit=True)  # an administrator grants the right
    v2.deliver([result()])
    assert len(fake.submits_v2) == 2


def test_v2_without_realtime_right_is_a_rights_error(
    fake: CentreonApiFake, v2: ApiV2Forwarder
) -> None:
    fake.grant(realtime=False)
    with pytest.raises(CentreonRightsError, match="Reach API realtime"):
        v2.deliver([result()])
    assert len(fake.calls("POST", "/login")) == 1
    assert fake.submits_v2 == []


def test_v2_unknown_service_is_dropped_and_counted(
    fake: CentreonApiFake, v2: ApiV2Forwarder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    v2.deliver([result("mx1", "SMTP-Login"), result("mx9", "SMTP-Login"), result("mx2")])
    assert v2.dropped_unknown == 1
    assert [s.service_id for s in fake.submits_v2] == [101, 201]
    assert "mx9" in caplog.text
    # Not retried at once: the unknown name is remembered for a while.
    v2.deliver([result("mx9", "SMTP-Login")])
    assert v2.dropped_unknown == 2
    assert len(fake.calls("GET", "/monitoring/services")) == 1  # the three names, once


def test_v2_unknown_name_is_looked_up_again_after_the_recheck_delay(
    fake: CentreonApiFake,
) -> None:
    with ApiV2Forwarder(fake.url_v2, "api", PASSWORD, unknown_recheck=0.2) as forwarder:
        forwarder.deliver([result("mx9")])
        assert forwarder.dropped_unknown == 1
        fake.set_known("mx9", "SMTP-Login", 19, 901)  # added in Centreon since
        time.sleep(0.3)
        forwarder.deliver([result("mx9")])
    assert [s.service_id for s in fake.submits_v2] == [901]


def test_v2_stale_id_is_evicted_and_looked_up_again(
    fake: CentreonApiFake, v2: ApiV2Forwarder
) -> None:
    v2.deliver([result("mx1", "SMTP-Login"), result("mx2")])
    # SMTP-Login on mx1 is deleted and created again with a new id.
    fake.forget("mx1", "SMTP-Login")
    fake.set_known("mx1", "SMTP-Login", 12, 111)
    v2.deliver([result("mx1", "SMTP-Login"), result("mx2")])
    assert [s.service_id for s in fake.submits_v2] == [101, 201, 111, 201]
    assert v2.dropped_unknown == 0
    # The new id is cached: the next batch goes out in one request.
    before = len(fake.calls("GET", "/monitoring/services"))
    v2.deliver([result("mx1", "SMTP-Login"), result("mx2")])
    assert len(fake.calls("GET", "/monitoring/services")) == before
    assert fake.calls("POST", "/monitoring/resources/submit")[-1].status == 204


def test_v2_deleted_service_is_dropped_the_others_delivered(
    fake: CentreonApiFake, v2: ApiV2Forwarder
) -> None:
    v2.deliver([result("mx1", "SMTP-Login"), result("mx2")])
    fake.forget("mx1", "SMTP-Login")
    v2.deliver([result("mx1", "SMTP-Login"), result("mx2"), result("mx1", "SMTP-Message")])
    assert [s.service_id for s in fake.submits_v2] == [101, 201, 201, 102]
    assert v2.dropped_unknown == 1


def test_v2_invalid_result_is_dropped_and_counted(
    fake: CentreonApiFake, v2: ApiV2Forwarder
) -> None:
    v2.deliver([result(status=0), result("mx2", status=7), result("mx1", "SMTP-Message")])
    assert [s.service_id for s in fake.submits_v2] == [101, 102]
    assert v2.dropped_invalid == 1


def test_v2_500_is_a_forward_error_and_the_retry_loses_nothing(
    fake: CentreonApiFake, v2: ApiV2Forwarder
) -> None:
    batch = [result("mx1", "SMTP-Login", 2), result("mx2", "SMTP-Login", 1)]
    v2.deliver([result()])
    fake.fail_next(1, 500)
    with pytest.raises(ForwardError, match="500"):
        v2.deliver(batch)
    assert len(fake.submits_v2) == 1
    v2.deliver(batch)  # the outbox retries the same batch once Centreon is back
    assert [(s.service_id, s.status) for s in fake.submits_v2] == [(101, 0), (101, 2), (201, 1)]


def test_v2_500_on_login_is_a_forward_error(fake: CentreonApiFake, v2: ApiV2Forwarder) -> None:
    fake.fail_next(1, 503)
    with pytest.raises(ForwardError, match="503"):
        v2.deliver([result()])
    v2.deliver([result()])
    assert len(fake.submits_v2) == 1


def test_v2_close_logs_out(fake: CentreonApiFake) -> None:
    forwarder = ApiV2Forwarder(fake.url_v2, "api", PASSWORD)
    forwarder.deliver([result()])
    token = fake.calls("POST", "/monitoring/resources/submit")[0].headers["x-auth-token"]
    forwarder.close()
    [logout] = fake.calls("GET", "/logout")
    assert logout.headers["x-auth-token"] == token
    assert logout.status == 200
    forwarder.close()  # idempotent
    with pytest.raises(ForwardError, match="closed"):
        forwarder.deliver([result()])


def test_v2_close_is_best_effort_when_centreon_is_gone() -> None:
    forwarder = ApiV2Forwarder(refused_url(V2_PREFIX), "api", PASSWORD, timeout=1.0)
    forwarder.close()


def test_v2_empty_batch_makes_no_request(fake: CentreonApiFake, v2: ApiV2Forwarder) -> None:
    v2.deliver([])
    assert fake.requests == []


def test_v2_large_batch_is_split_in_order(fake: CentreonApiFake) -> None:
    with ApiV2Forwarder(fake.url_v2, "api", PASSWORD, max_batch=2) as forwarder:
        forwarder.deliver([result(status=n % 4) for n in range(5)])
    assert len(fake.calls("POST", "/monitoring/resources/submit")) == 3
    assert [s.status for s in fake.submits_v2] == [0, 1, 2, 3, 0]


def test_v2_from_config_resolves_the_password_reference(
    fake: CentreonApiFake, tmp_path: Path
) -> None:
    secret = tmp_path / "centreon-password"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    model = ApiV2Config(
        type="api_v2", url=fake.url_v2, username="api", password=SecretRef("file", str(secret))
    )
    with ApiV2Forwarder.from_config(model) as forwarder:
        forwarder.deliver([result()])
        assert forwarder.name.startswith("api_v2:127.0.0.1:")
    assert len(fake.submits_v2) == 1


def test_v2_from_config_fails_fast_on_a_missing_secret(fake: CentreonApiFake) -> None:
    model = ApiV2Config(
        type="api_v2",
        url=fake.url_v2,
        username="api",
        password=SecretRef("env", "SMTP_CHECKS_TEST_NO_SUCH_VARIABLE"),
    )
    with pytest.raises(SecretNotFound, match="SMTP_CHECKS_TEST_NO_SUCH_VARIABLE"):
        ApiV2Forwarder.from_config(model)


# --- API v1 ------------------------------------------------------------------------------------


def test_v1_authenticates_once_and_submits_by_names(
    fake: CentreonApiFake, v1: ApiV1Forwarder
) -> None:
    batch = [
        result("mx2", "SMTP-Login", 2, "CRITICAL: cannot connect", ""),
        result("mx1", "SMTP-Login", 0),
    ]
    v1.deliver(batch)
    v1.deliver([result("mx1", "SMTP-Message", 1, "WARNING: slow", "'time'=3.1s;2;5;0;")])
    [auth] = fake.calls("POST", "authenticate")
    assert auth.headers["content-type"] == "application/x-www-form-urlencoded"
    assert auth.body == {"username": "api", "password": PASSWORD}
    submits = fake.calls("POST", "submit")
    assert len(submits) == 2
    assert submits[0].query == {"action": "submit", "object": "centreon_submit_results"}
    assert len({s.headers["centreon-auth-token"] for s in submits}) == 1
    assert submits[0].body == {
        "results": [
            {
                "updatetime": "1700000000",
                "host": "mx2",
                "service": "SMTP-Login",
                "status": "2",
                "output": "CRITICAL: cannot connect",
                "perfdata": "",
            },
            {
                "updatetime": "1700000000",
                "host": "mx1",
                "service": "SMTP-Login",
                "status": "0",
                "output": "OK: Response time 0.005 second(s)",
                "perfdata": "'time'=0.005s;;;0;",
            },
        ]
    }
    assert [s.status for s in submits] == [200, 200]
    assert fake.submits_v1[2] == SubmittedV1(
        "1700000000", "mx1", "SMTP-Message", "1", "WARNING: slow", "'time'=3.1s;2;5;0;"
    )
    assert (v1.logins, v1.delivered) == (1, 3)


def test_v1_authenticates_again_when_centreon_deleted_the_token(
    fake: CentreonApiFake, v1: ApiV1Forwarder
) -> None:
    v1.deliver([result()])
    fake.expire_tokens()  # Centreon answers a token it deleted with 403 "Forbidden"
    v1.deliver([result()])
    assert len(fake.calls("POST", "authenticate")) == 2
    assert [s.status for s in fake.calls("POST", "submit")] == [200, 403, 200]
    assert len(fake.submits_v1) == 2


def test_v1_user_without_api_rights_is_a_rights_error_not_a_login_loop(
    fake: CentreonApiFake, v1: ApiV1Forwarder
) -> None:
    v1.deliver([result()])
    # Centreon 22.10 lets a user without "Reach API Realtime" authenticate, then refuses
    # every call with 403 "Forbidden".
    fake.grant(api=False, v1_login_checks_rights=False)
    with pytest.raises(CentreonRightsError, match="Reach API Realtime") as caught:
        v1.deliver([result()])
    assert PASSWORD not in str(caught.value)
    assert len(fake.calls("POST", "authenticate")) == 2


def test_v1_login_refused_for_lack_of_rights_says_so(
    fake: CentreonApiFake, v1: ApiV1Forwarder
) -> None:
    fake.grant(api=False)  # newer Centreon: 403 "Unauthorized" at login
    with pytest.raises(ForwardError, match="Reach API Realtime") as caught:
        v1.deliver([result()])
    assert "403" in str(caught.value) and "Unauthorized" in str(caught.value)
    assert len(fake.calls("POST", "authenticate")) == 1


def test_v1_per_result_codes_206(
    fake: CentreonApiFake, v1: ApiV1Forwarder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    v1.deliver(
        [
            result("mx1", "SMTP-Login"),
            result("mx9", "SMTP-Login"),  # unknown host: 404
            result("mx1", "SMTP-Nothing"),  # unknown service: 404
            result("mx2", "SMTP-Login", perfdata="garbage"),  # invalid perfdata: 400
            result("mx1", "SMTP-Message"),
        ]
    )
    [submit] = fake.calls("POST", "submit")
    assert submit.status == 206
    assert [(r.host, r.service) for r in fake.submits_v1] == [
        ("mx1", "SMTP-Login"),
        ("mx1", "SMTP-Message"),
    ]
    assert (v1.delivered, v1.dropped_unknown, v1.dropped_invalid) == (2, 2, 1)
    assert "The host is not present" in caplog.text
    assert "The service is not present" in caplog.text
    assert "performance data is not valid" in caplog.text
    v1.deliver([result()])  # nothing is retried
    assert len(fake.submits_v1) == 3


def test_v1_500_is_a_forward_error_and_the_retry_loses_nothing(
    fake: CentreonApiFake, v1: ApiV1Forwarder
) -> None:
    batch = [result("mx1", "SMTP-Login", 2), result("mx2", "SMTP-Login", 1)]
    v1.deliver([result()])
    fake.fail_next(1, 500)
    with pytest.raises(ForwardError, match="500"):
        v1.deliver(batch)
    v1.deliver(batch)
    assert [(r.host, r.status) for r in fake.submits_v1] == [
        ("mx1", "0"),
        ("mx1", "2"),
        ("mx2", "1"),
    ]


def test_v1_from_config_resolves_the_password_reference(
    fake: CentreonApiFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_CHECKS_TEST_CENTREON_PASSWORD", PASSWORD)
    model = ApiV1Config(
        type="api_v1",
        url=fake.url_v1,
        username="api",
        password=SecretRef("env", "SMTP_CHECKS_TEST_CENTREON_PASSWORD"),
    )
    with ApiV1Forwarder.from_config(model) as forwarder:
        forwarder.deliver([result()])
    assert len(fake.submits_v1) == 1


@dataclass(frozen=True)
class Api:
    """What the tests of behaviour both APIs share need to know of one of them."""

    forwarder: type[ApiV1Forwarder | ApiV2Forwarder]
    url_of: Callable[[CentreonApiFake], str]  # its URL on the fake
    submits_of: Callable[[CentreonApiFake], Sequence[object]]  # what the fake recorded
    path: str  # its path below the server
    refusal_words: tuple[str, ...]  # how it words a refused login


BOTH = [
    pytest.param(
        Api(ApiV2Forwarder, lambda f: f.url_v2, lambda f: f.submits_v2, V2_PREFIX,
            ("login refused", "'api'")),
        id="v2",
    ),
    pytest.param(
        Api(ApiV1Forwarder, lambda f: f.url_v1, lambda f: f.submits_v1,
            "/centreon/api/index.php", ("authentication refused",)),
        id="v1",
    ),
]  # fmt: skip


@pytest.mark.parametrize("api", BOTH)
def test_timeout_is_a_forward_error_within_the_timeout(fake: CentreonApiFake, api: Api) -> None:
    with api.forwarder(api.url_of(fake), "api", PASSWORD, timeout=0.5) as forwarder:
        forwarder.deliver([result()])
        fake.delay = 3.0
        started = time.monotonic()
        with pytest.raises(ForwardError, match="timed out"):
            forwarder.deliver([result()])
        elapsed = time.monotonic() - started
        fake.delay = 0.0
        assert elapsed < 1.5
        forwarder.deliver([result()])
    assert len(api.submits_of(fake)) == 2


@pytest.mark.parametrize("api", BOTH)
def test_connection_refused_is_a_forward_error(api: Api) -> None:
    with (
        api.forwarder(refused_url(api.path), "api", PASSWORD, timeout=1.0) as forwarder,
        pytest.raises(ForwardError, match="cannot connect"),
    ):
        forwarder.deliver([result()])


@pytest.mark.parametrize("api", BOTH)
def test_wrong_password_error_never_shows_it(fake: CentreonApiFake, api: Api) -> None:
    wrong = "Wr0ng-Passw0rd"
    with (
        api.forwarder(api.url_of(fake), "api", wrong, timeout=2.0) as forwarder,
        pytest.raises(ForwardError) as caught,
    ):
        forwarder.deliver([result()])
    message = str(caught.value)
    for word in api.refusal_words:
        assert word in message
    assert wrong not in message
    assert PASSWORD not in message
    assert api.submits_of(fake) == []


def test_fake_records_v2_submits_as_typed_values(fake: CentreonApiFake, v2: ApiV2Forwarder) -> None:
    v2.deliver([result()])
    assert fake.submits_v2 == [
        SubmittedV2(12, 101, 0, "OK: Response time 0.005 second(s)", "'time'=0.005s;;;0;")
    ]


# --- each result exactly once, as Centreon's code applies them --------------------------------


class Settlements:
    """What a forwarder settled, as an outbox records it."""

    def __init__(self) -> None:
        self.positions: list[int] = []
        self.heartbeats = 0

    def __call__(self, positions: Sequence[int]) -> None:
        if not positions:
            self.heartbeats += 1
        assert not set(positions) & set(self.positions), "settled twice"
        self.positions.extend(positions)


def many(count: int) -> list[PassiveResult]:
    return [result(f"h{n}", "SMTP-Login", n % 4, f"state {n}") for n in range(count)]


@pytest.fixture
def hosts(fake: CentreonApiFake) -> CentreonApiFake:
    for n in range(10):
        fake.set_known(f"h{n}", "SMTP-Login", 100 + n, 1000 + n)
    return fake


def applied(fake: CentreonApiFake) -> list[int]:
    return [s.service_id for s in fake.submits_v2]


def test_v2_a_service_recreated_mid_batch_gets_each_result_once(
    hosts: CentreonApiFake, v2: ApiV2Forwarder
) -> None:
    v2.deliver(many(10))  # every id is cached
    hosts.forget("h4", "SMTP-Login")
    hosts.set_known("h4", "SMTP-Login", 104, 1404)  # re-created: a new id
    settled = Settlements()
    v2.deliver(many(10), settled)
    # Centreon applied h0..h3, stopped at h4's old id; h4 looked up again, then the rest.
    assert applied(hosts)[10:] == [1000, 1001, 1002, 1003, 1404, 1005, 1006, 1007, 1008, 1009]
    assert sorted(settled.positions) == list(range(10))
    assert [s.status for s in hosts.calls("POST", "/monitoring/resources/submit")][1:] == [
        404,
        204,
    ]


def test_v2_a_service_deleted_mid_batch_is_dropped_the_others_applied_once(
    hosts: CentreonApiFake, v2: ApiV2Forwarder
) -> None:
    v2.deliver(many(10))
    hosts.forget("h6", "SMTP-Login")
    settled = Settlements()
    v2.deliver(many(10), settled)
    assert applied(hosts)[10:] == [1000, 1001, 1002, 1003, 1004, 1005, 1007, 1008, 1009]
    assert v2.dropped_unknown == 1
    assert sorted(settled.positions) == list(range(10))


def test_v2_a_host_recreated_mid_batch_has_all_its_services_looked_up_again(
    fake: CentreonApiFake, v2: ApiV2Forwarder
) -> None:
    batch = [result("mx2"), result("mx1", "SMTP-Login"), result("mx1", "SMTP-Message")]
    v2.deliver(batch)
    fake.forget("mx1", "SMTP-Login")
    fake.forget("mx1", "SMTP-Message")
    fake.set_known("mx1", "SMTP-Login", 22, 101)  # the host re-created: new host id
    fake.set_known("mx1", "SMTP-Message", 22, 102)
    v2.deliver(batch)
    assert [(s.host_id, s.service_id) for s in fake.submits_v2[3:]] == [
        (13, 201),
        (22, 101),
        (22, 102),
    ]
    statuses = [s.status for s in fake.calls("POST", "/monitoring/resources/submit")]
    assert statuses == [204, 404, 204]  # one 404 for the host, not one per service


def test_v2_schema_error_drops_the_offender_loudly_and_delivers_the_rest_once(
    hosts: CentreonApiFake, v2: ApiV2Forwarder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    batch = many(5)
    batch[2] = result("h2", "SMTP-Login", status=9, output="bad status")
    settled = Settlements()
    v2.deliver(batch, settled)
    assert applied(hosts) == [1000, 1001, 1003, 1004]
    assert v2.dropped_invalid == 1
    [submit_500, submit_204] = hosts.calls("POST", "/monitoring/resources/submit")
    assert (submit_500.status, submit_204.status) == (500, 204)
    assert "resources[2].status" in caplog.text and "h2/SMTP-Login" in caplog.text
    assert sorted(settled.positions) == list(range(5))


def test_v2_settles_in_request_sized_steps_and_heartbeats_after_every_request(
    hosts: CentreonApiFake,
) -> None:
    with ApiV2Forwarder(hosts.url_v2, "api", PASSWORD, max_batch=4) as forwarder:
        forwarder.deliver(many(10))  # ids cached: three submit requests from now on
        hosts.fail_next(1, 503, after=2)  # the third request
        settled = Settlements()
        with pytest.raises(ForwardError, match="503"):
            forwarder.deliver(many(10), settled)
    assert settled.positions == [0, 1, 2, 3, 4, 5, 6, 7]  # the two requests that went through
    assert settled.heartbeats == 3  # one per request, the failed one included
    assert applied(hosts)[10:] == [1000 + n for n in range(8)]


def test_v2_lookup_finds_the_exact_name_among_case_insensitive_pages(
    fake: CentreonApiFake, v2: ApiV2Forwarder
) -> None:
    # Centreon's database matches MX1, Mx1, mX1... for mx1; the entry named exactly comes last.
    variants = [base + " " * spaces for base in ("MX1", "Mx1", "mX1") for spaces in range(400)]
    for n, name in enumerate(variants):
        fake.set_known(name, "SMTP-Login", 500 + n, 5000 + n)
    v2.deliver([result("mx1", "SMTP-Login")])
    assert applied(fake) == [101]
    pages = [int(lookup.query["page"]) for lookup in fake.calls("GET", "/monitoring/services")]
    assert pages[0] == 1 and len(pages) >= 2


def test_v2_long_lived_api_token_never_logs_in(fake: CentreonApiFake) -> None:
    token = fake.add_api_token()
    with ApiV2Forwarder(fake.url_v2, token=token) as forwarder:
        forwarder.deliver([result()])
        forwarder.deliver([result("mx2")])
        fake.revoke_api_tokens()
        with pytest.raises(CentreonRightsError, match="API token was refused") as caught:
            forwarder.deliver([result()])
    assert token not in str(caught.value)
    assert fake.calls("POST", "/login") == []
    assert fake.calls("GET", "/logout") == []
    assert {
        s.headers["x-auth-token"] for s in fake.calls("POST", "/monitoring/resources/submit")
    } == {token}
    assert applied(fake) == [101, 201]


def test_v2_api_token_from_the_config(
    fake: CentreonApiFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_CHECKS_TEST_CENTREON_TOKEN", fake.add_api_token())
    model = ApiV2Config(
        type="api_v2", url=fake.url_v2, token=SecretRef("env", "SMTP_CHECKS_TEST_CENTREON_TOKEN")
    )
    with ApiV2Forwarder.from_config(model) as forwarder:
        forwarder.deliver([result()])
    assert applied(fake) == [101] and fake.calls("POST", "/login") == []


@pytest.mark.parametrize("api", BOTH)
def test_server_text_is_written_for_the_engine_to_show_it_as_sent(
    fake: CentreonApiFake, api: Api
) -> None:
    text = r"CRITICAL: Unable to connect to SMTP: 554 C:\dir evil\nFAKE"
    with api.forwarder(api.url_of(fake), "api", PASSWORD) as forwarder:
        forwarder.deliver([result(status=2, output=text, perfdata="")])
    [command] = fake.engine_commands
    # Centreon copies it unchanged into the Engine's command: a backslash before n is shown
    # with its lookalike (no encoding survives Centreon Engine's passes), the others doubled.
    assert command.endswith(
        ";2;CRITICAL: Unable to connect to SMTP: 554 C:\\\\dir evil\u29f5nFAKE|"
    )
