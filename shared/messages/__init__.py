"""The messages between roles, JSON validated with pydantic at both ends and versioned:
CheckRequest (scheduler -> worker) and CheckResult (worker -> consumer). Version 2 carries
the run's `CheckIdentity` whole; version 1 is still read for one release
(shared/messages/version_1.py)."""

from smtp_checks.shared.messages.request import CheckRequest, MessageParams, Target
from smtp_checks.shared.messages.result import CheckResult, Handling, Outcome

SCHEMA_VERSION = 2

__all__ = [
    "SCHEMA_VERSION",
    "CheckRequest",
    "CheckResult",
    "Handling",
    "MessageParams",
    "Outcome",
    "Target",
]
