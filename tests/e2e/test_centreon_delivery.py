"""What reaches Centreon, as Centreon's own code takes it: server text shown as the server
sent it (a real Nagios 4 core reads it), and each result applied once, in order, per
forwarder, through a token expiry, services re-created with new ids mid-batch and a
consumer killed with -9 in the middle of a delivery (tests/centreon_api_fake.py counts what
it applied, as Centreon would have applied it)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from smtp_checks.consumer.deliverer import LEASE_TTL
from smtp_checks.shared.messages import CheckRequest, CheckResult, Handling, Outcome
from smtp_checks.shared.probe.result import ProbeResult
from smtp_checks.shared.result_queue import ResultQueue
from tests.centreon_api_fake import CentreonApiFake
from tests.e2e.pipeline import Pipeline, host, wait_until
from tests.smtp_servers import ESCAPE_REFUSAL_TEXT, refused_port

HOSTS = 30
PASSWORD = "Api-S3cret!"


def test_server_text_reaches_nagios_as_the_server_sent_it(
    pipelines: Callable[..., Pipeline], raw_server_factory: Callable[..., Any]
) -> None:
    server = raw_server_factory("escape_refusal")
    pipeline = pipelines([host("p-escapes", "paris", server.port, {"login": {}})]).start()
    shown = pipeline.wait_for_services(
        lambda s: s.get("has_been_checked") == "1", 30, "the hostile server checked"
    )[("p-escapes", "SMTP-Login")]
    expected = f"CRITICAL: Unable to connect to SMTP: session refused: {ESCAPE_REFUSAL_TEXT}"
    assert shown["plugin_output"] == expected
    assert shown["long_plugin_output"] == ""


@pytest.fixture
def fake() -> Iterator[CentreonApiFake]:
    with CentreonApiFake(password=PASSWORD) as server:
        for n in range(HOSTS):
            server.set_known(f"h{n}", "SMTP-Login", 100 + n, 1000 + n)
        yield server


def api_forwarder(kind: str, fake: CentreonApiFake) -> dict[str, Any]:
    url = fake.url_v2 if kind == "api_v2" else fake.url_v1
    return {"type": kind, "url": url, "username": "api", "password": "env:E2E_CENTREON_PASSWORD"}


def wave(pipeline: Pipeline, number: int) -> list[str]:
    """One result per host, each a state change (the waves alternate OK and CRITICAL), pushed
    on the result queue as workers push them; the output each will show in Centreon."""
    queue = ResultQueue(pipeline.client)
    outputs = []
    now = time.time()
    for check in pipeline.config.scheduled_checks():
        request = CheckRequest.from_scheduled(check, scheduled_for=now - 1, stale_at=now + 60)
        handling = Handling(worker="w@e2e", received_at=now - 1, queue_wait=0.0)
        index = int(check.host[1:])
        if number % 2 == 0:
            elapsed = number / 10 + index / 1000
            probe = ProbeResult(time=elapsed)
            result = CheckResult.from_probe(request, handling, probe, now - elapsed)
            outputs.append(f"OK: Response time {elapsed:.3f} second(s)")
        else:
            detail = f"wave {number} of {check.host}"
            result = CheckResult.not_run(request, handling, Outcome.CREDENTIAL, detail)
            outputs.append(f"UNKNOWN: Cannot run check: {detail} (worker w@e2e)")
        queue.push(result)
    return outputs


def applied_outputs(fake: CentreonApiFake, kind: str) -> Counter[str]:
    submits = fake.submits_v2 if kind == "api_v2" else fake.submits_v1
    return Counter(
        submit.output.rstrip() for submit in submits
    )  # a plugin's error line ends with a space


@pytest.mark.parametrize("kind", ["api_v2", "api_v1"])
def test_each_result_reaches_centreon_once_through_expiry_recreation_and_a_kill(
    pipelines: Callable[..., Pipeline],
    fake: CentreonApiFake,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    monkeypatch.setenv("E2E_CENTREON_PASSWORD", PASSWORD)
    hosts = [host(f"h{n}", "paris", refused_port(), {"login": {}}) for n in range(HOSTS)]
    pipeline = pipelines(hosts, resend_interval=3600, forwarders=[api_forwarder(kind, fake)])
    pipeline.start(roles=["consumer"])
    sent: list[list[str]] = []

    def all_applied() -> bool:
        applied = applied_outputs(fake, kind)
        return all(applied[output] >= 1 for outputs in sent for output in outputs)

    sent.append(wave(pipeline, 0))
    wait_until(all_applied, 30, "wave 0 applied")
    fake.expire_tokens()  # Centreon deleted the token: v2 says 401, v1 403
    sent.append(wave(pipeline, 1))
    wait_until(all_applied, 30, "wave 1 applied")
    for n in (3, 17, 29):  # re-created in Centreon: new ids, mid-batch
        fake.forget(f"h{n}", "SMTP-Login")
        fake.set_known(f"h{n}", "SMTP-Login", 100 + n, 5000 + n)
    sent.append(wave(pipeline, 2))
    wait_until(all_applied, 30, "wave 2 applied")

    # The consumer dies with -9 while Centreon takes its time over a submit.
    fake.delay = 1.5
    submits_before = len(fake.calls("POST", _submit_path(kind)))
    sent.append(wave(pipeline, 3))
    wait_until(
        lambda: len(fake.calls("POST", _submit_path(kind))) > submits_before,
        30,
        "a submit in flight",
        every=0.02,
    )
    pipeline.kill("consumer")
    killed_at = time.monotonic()
    fake.delay = 0.0
    in_flight = fake.calls("POST", _submit_path(kind))[-1].body
    pipeline.start_role("consumer")
    sent.append(wave(pipeline, 4))
    wait_until(all_applied, 30, "waves 3 and 4 applied after the restart")
    taken_back_after = time.monotonic() - killed_at

    applied = applied_outputs(fake, kind)
    maybe_twice = _outputs_of(in_flight, kind)  # Centreon may have applied it, or not
    for outputs in sent:
        for output in outputs:
            assert applied[output] == 1 or (output in maybe_twice and applied[output] == 2), output
    # The restarted consumer took its predecessor's outbox and results over without waiting
    # for their leases to run out.
    assert taken_back_after < LEASE_TTL
    # Nothing left in flight once Centreon's answer to the last submit is in (the fake
    # applies a batch before it answers: the deliverer settles it a moment later).
    wait_until(
        lambda: pipeline.client.keys(f"smtp-checks:outbox:{kind}:*inflight") == [],
        10,
        "the outbox settled",
    )
    # In order: for every service, Centreon's last result is the newest one.
    last: dict[str, str] = {}
    for command in fake.engine_commands:
        last[command.split(";")[1]] = command
    assert all(f";{sent[4][n]}|" in last[f"h{n}"] for n in range(HOSTS))


def _submit_path(kind: str) -> str:
    return "/monitoring/resources/submit" if kind == "api_v2" else "submit"


def _outputs_of(body: Any, kind: str) -> set[str]:
    items = body["resources"] if kind == "api_v2" else body["results"]
    return {item["output"].rstrip() for item in items}
