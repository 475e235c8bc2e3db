"""The probe's options beyond the Perl plugin through the whole pipeline (beat, queue,
worker, consumer, a real Nagios 4 core), against a real Postfix: a relay test of a closed
and of an open relay, a check with `expect` and `commands`, one behind the PROXY protocol
from a site's egress address. What Nagios shows is what `smtp-checks check` prints for the
same server."""

from __future__ import annotations

from collections.abc import Callable

from tests.e2e.pipeline import Pipeline, host
from tests.postfix import (
    PostfixInstance,
)

OUTSIDE = "x@outside.example"


def test_relay_expect_commands_and_proxy_reach_nagios_through_the_pipeline(
    pipelines: Callable[..., Pipeline], mta: PostfixInstance
) -> None:
    relay = {"relay": {"from": "monitor@test.example", "to": OUTSIDE}}
    steps = {"login": {"expect": "ESMTP Postfix", "commands": [
        {"command": "NOOP", "response": "^250"}, {"command": "VRFY postmaster",
                                                  "response": "^250"}]}}  # fmt: skip
    hosts = [
        host("mx-closed", "paris", mta.ports["plain"], relay),
        host("mx-open", "paris", mta.ports["open_relay"], relay),
        host("mx-steps", "lyon", mta.ports["plain"], steps),
        host("mx-proxied", "lyon", mta.ports["proxy"], {"login": {}}, proxy_protocol="v2",
             source_address="127.0.0.6"),
    ]  # fmt: skip
    pipeline = pipelines(hosts, timeout=4.0, interval=8)
    pipeline.start()
    states = pipeline.wait_for_services(
        lambda service: service.get("has_been_checked") == "1", 40, "every service checked"
    )
    shown = {(h, s): (v["current_state"], v["plugin_output"]) for (h, s), v in states.items()}
    assert shown[("mx-closed", "SMTP-Relay")] == (
        "0",
        f"OK: Relay refused: 554 5.7.1 <{OUTSIDE}>: Relay access denied",
    )
    assert shown[("mx-open", "SMTP-Relay")] == (
        "2",
        f"CRITICAL: Open relay: RCPT TO <{OUTSIDE}> accepted: 250 2.1.5 Ok",
    )
    assert shown[("mx-steps", "SMTP-Login")] == (
        "2", "CRITICAL: Unexpected reply: VRFY postmaster: expected /^250/, got: 252 2.0.0 postmaster"
    )  # fmt: skip
    assert shown[("mx-proxied", "SMTP-Login")][0] == "0", shown
    mta.wait_for_log(r"postfix/proxy/smtpd\[\d+\]: connect from \S+\[127\.0\.0\.6\]")
