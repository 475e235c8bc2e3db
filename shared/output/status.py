"""Nagios/Centreon check states and the order in which they are reported."""

from __future__ import annotations

from enum import IntEnum


class Status(IntEnum):
    """A check state; the value is the plugin's exit code."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3

    @property
    def label(self) -> str:
        return self.name


# The order Centreon prints states in on the first line of its output: CRITICAL, WARNING,
# UNKNOWN, then OK (and OK only when the global state is OK).
SEVERITY_ORDER: tuple[Status, ...] = (
    Status.CRITICAL,
    Status.WARNING,
    Status.UNKNOWN,
    Status.OK,
)

# How Centreon picks the global state. output.pm ORs bit masks (CRITICAL=7, UNKNOWN=3,
# WARNING=1, OK=0), so UNKNOWN beats WARNING even though WARNING is printed first.
EXIT_PRECEDENCE: tuple[Status, ...] = (
    Status.CRITICAL,
    Status.UNKNOWN,
    Status.WARNING,
    Status.OK,
)


def worst(*statuses: Status) -> Status:
    """The global state when several apply (CRITICAL > UNKNOWN > WARNING > OK), as Centreon
    computes it; OK when none are given."""
    for status in EXIT_PRECEDENCE:
        if status in statuses:
            return status
    return Status.OK
