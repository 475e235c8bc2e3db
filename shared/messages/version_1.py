"""Messages of schema version 1, read as version 2: workers and consumers of this release
accept what the previous release's beat and workers send, so that a deployment upgrades one
role at a time (the consumer, then the workers site by site, then the beat). Delete this
module in the release after.

Version 1 had the identity of the run, and the worker's handling of it, as top-level fields.
"""

from __future__ import annotations

from typing import Any

_IDENTITY: tuple[str, ...] = ("check_id", "host", "service", "site", "mode", "run_id")
_IDENTITY += ("scheduled_for", "stale_at", "adhoc")
_HANDLING = ("worker", "received_at", "queue_wait", "permit_wait", "redelivered")


def upgraded(data: Any, *, handling: bool = False) -> Any:
    """`data` as version 2 if it is a version 1 message; anything else unchanged (and left
    for validation to refuse)."""
    if not isinstance(data, dict) or data.get("schema_version") != 1:
        return data
    moved = set(_IDENTITY) | (set(_HANDLING) if handling else set())
    rest = {key: value for key, value in data.items() if key not in moved}
    rest["schema_version"] = 2
    rest["identity"] = {key: data[key] for key in _IDENTITY if key in data}
    if handling:
        rest["handling"] = {key: data[key] for key in _HANDLING if key in data}
    return rest
