"""The one tree of errors of ours. Every error a role or the command line can meet is a
`SmtpChecksError`, whose message says what failed and how to fix it (never a secret), and
whose `exit_code` is what `smtp-checks` exits with (cli/main.py maps them, in one place).
The classes that carry more than a message live beside the code that raises them
(the limiter's in workers/target_limits.py).

Errors of the network or of servers we talk to are not exceptions here: a probe failure is
data (shared/probe/failures.py), and a Redis outage is one of `REDIS_DOWN`
(shared/redis_client.py), which the roles ride out.
"""

from __future__ import annotations

from collections.abc import Sequence


class SmtpChecksError(Exception):
    """Something of ours cannot go on; the message is for an operator."""

    exit_code = 2


class ConfigError(SmtpChecksError):
    """A configuration that cannot be used; `problems` holds every problem found, not just
    the first (shared/config/problems.py: each `FILE: location: reason`)."""

    def __init__(self, problems: Sequence[object]) -> None:
        super().__init__("\n".join(str(problem) for problem in problems))
        self.problems = list(problems)


class SetupError(SmtpChecksError):
    """A role cannot start with this configuration on this machine: an unknown site, no
    broker, no Redis, no redis-server for `run`."""


class OptionError(SmtpChecksError):
    """A plugin command-line option is wrong; the text is what the Perl plugin prints after
    `UNKNOWN: `. Exit 3 (UNKNOWN), or what `--opt-exit` says."""

    exit_code = 3


class ThresholdError(OptionError, ValueError):
    """A threshold Centreon would refuse; the message is the plugin's own text."""

    def __init__(self, label: str, text: str) -> None:
        super().__init__(f"Wrong {label} threshold '{text}'.")
        self.label = label
        self.text = text


class SecretNotFound(SmtpChecksError):
    """A secret reference (`env:NAME`, `file:PATH`) does not resolve on this machine. The
    message names the reference, never a value."""


class ForwardError(SmtpChecksError):
    """Delivery to Centreon failed in a way worth retrying later (Centreon down, reader gone,
    5xx, timeout). What was not settled stays in the outbox, in order."""


class CentreonRightsError(ForwardError):
    """Centreon knows who we are but refuses what we ask: logging in again cannot help, an
    administrator must grant a right. Retried with backoff (the right may be granted)."""


class LimiterError(SmtpChecksError):
    """A per-target-server permit could not be had (workers/target_limits.py)."""
