"""How a round trip's verdict is worded: delivered (against the delivery thresholds), to a
junk folder, not delivered within the receive timeout, unknown; the perfdata `time` and
`delivery`, the hops with --extra-perfdata, and what --verbose says of the error bound."""

from __future__ import annotations

import pytest

from smtp_checks.shared.mailbox.delivery import Delivery, next_look_delay
from smtp_checks.shared.mailbox.received import hops, received_dates
from smtp_checks.shared.output.options import OutputOptions
from smtp_checks.shared.output.report import report
from smtp_checks.shared.output.thresholds import Thresholds
from smtp_checks.shared.probe.failures import FailureKind, ProbeFailure
from smtp_checks.shared.probe.phases import Phase
from smtp_checks.shared.probe.result import ProbeResult
from smtp_checks.shared.probe.spec import Mode

SENT = 1_796_292_000.0  # 2026-12-03T10:00:00Z
TOKEN = "ab" * 16
SENT_OK = ProbeResult(time=0.125, sent_after=0.1)
BASE = Delivery(token=TOKEN, sent_at=SENT, timeout=120)


def text(delivery: Delivery | None, *, result: ProbeResult = SENT_OK, verbose: bool = False,
         extra: bool = False, warning: str | None = None) -> tuple[int, str]:  # fmt: skip
    output = report(
        result, Mode.ROUNDTRIP, Thresholds.parse(warning, None), delivery=delivery,
        extra_perfdata=extra,
    )  # fmt: skip
    rendered = output.render(OutputOptions(verbose=verbose, mode="roundtrip"))
    return rendered.exit_code, rendered.text


def test_delivered_is_ok_with_time_then_delivery_perfdata() -> None:
    found = BASE.found("INBOX", SENT + 3.25, junk=False, last_look_at=SENT + 1.0)
    assert text(found) == (
        0,
        "OK: Message delivered in 3.250 s - Response time 0.125 second(s) | "
        "'time'=0.125s;;;; 'delivery'=3.250s;;;;\n",
    )


def test_a_delivery_over_its_thresholds_takes_their_status() -> None:
    found = BASE.found("INBOX", SENT + 45, junk=False, last_look_at=SENT + 29)
    slow = Delivery(token=TOKEN, sent_at=SENT, timeout=120, warning="30", critical="60")
    code, out = text(slow.found("INBOX", SENT + 45, junk=False, last_look_at=SENT + 29))
    assert code == 1 and out.startswith("WARNING: Message delivered in 45.000 s |"), out
    assert "'delivery'=45.000s;0:30;0:60;;" in out
    assert found.seconds == 45 and found.bound == 16


def test_verbose_says_within_how_much_the_delivery_is_measured() -> None:
    found = BASE.found("INBOX", SENT + 7, junk=False, last_look_at=SENT + 3)
    _, out = text(found, verbose=True)
    assert (
        f"Delivery time measured to within 4.0 s (the time between the last two looks into "
        f"INBOX; token {TOKEN})"
    ) in out.splitlines()


def test_junk_is_a_warning() -> None:
    found = BASE.found("Junk", SENT + 2, junk=True, last_look_at=None)
    assert text(found)[0] == 1
    assert text(found)[1].startswith("WARNING: Delivered to Junk |")


def test_not_delivered_names_the_timeout_the_send_time_and_the_token() -> None:
    assert text(BASE) == (
        2,
        f"CRITICAL: Message not delivered within 120 s (sent 2026-12-03T10:00:00Z, token "
        f"{TOKEN}) | 'time'=0.125s;;;;\n",
    )


def test_a_mailbox_that_cannot_be_read_is_unknown_the_delivery_is_not_known() -> None:
    code, out = text(BASE.unknown("LOGIN refused: NO [AUTHENTICATIONFAILED]"))
    assert code == 3
    assert out.startswith("UNKNOWN: Cannot check the mailbox: LOGIN refused: NO ")


def test_refused_at_send_is_what_message_mode_says() -> None:
    refused = ProbeResult(
        time=0.05,
        failure=ProbeFailure.make(FailureKind.REJECTED, Phase.RCPT, "RCPT TO <x> refused: 550"),
    )
    assert text(None, result=refused) == (
        2,
        "CRITICAL: Unable to send message: RCPT TO <x> refused: 550 \n",
    )
    unreachable = ProbeResult(
        time=0.05,
        failure=ProbeFailure.make(FailureKind.REFUSED, Phase.CONNECT, "Connection refused"),
    )
    assert (
        text(None, result=unreachable)[1]
        == "UNKNOWN: Unable to connect to SMTP: Connection refused \n"
    )


def test_extra_perfdata_has_the_hops_between_received_headers() -> None:
    found = BASE.found(
        "INBOX", SENT + 9, junk=False, last_look_at=SENT + 5,
        received=(SENT + 1, SENT + 2, SENT + 8),
    )  # fmt: skip
    _, out = text(found, extra=True)
    assert "'hop1'=1s;;;; 'hop2'=6s;;;;" in out


def test_received_dates_oldest_first_and_hops_never_negative() -> None:
    block = (
        b"Received: from b by c;\r\n Thu, 03 Dec 2026 10:00:07 +0000\r\n"
        b"Received: from a by b; garbage date\r\n"
        b"Received: from x by a; Thu, 03 Dec 2026 10:00:09 +0000\r\n\r\n"
    )
    dates = received_dates(block)
    assert dates == (SENT + 9, SENT + 7)  # the unreadable one left out
    assert hops(dates) == (0.0,)  # the clocks disagree: no negative hop


@pytest.mark.parametrize(
    ("looks", "delay"), [(0, 2), (1, 2), (2, 4), (3, 8), (4, 16), (5, 30), (9, 30)]
)
def test_looks_back_off_to_thirty_seconds(looks: int, delay: float) -> None:
    assert next_look_delay(looks) == delay
