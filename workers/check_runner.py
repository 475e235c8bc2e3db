"""Run one check request on a worker and always end with a CheckResult or a dead letter.

The order of the steps is the point: validate the message; drop it if it is stale (it
must not run late); resolve the credential here, from the worker's own environment; wait
for a per-target permit; probe. The check's timeout bounds the permit wait and the probe
together, while `time` counts only the probe (the server's time).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from smtp_checks.shared.celery_app import CHECK_TASK
from smtp_checks.shared.messages import CheckRequest, CheckResult, Handling, Outcome
from smtp_checks.shared.probe.asyncio_driver import run_probe
from smtp_checks.workers.result_publisher import ResultPublisher
from smtp_checks.workers.secrets import SecretNotFound, resolve_secret
from smtp_checks.workers.target_limits import LimiterUnavailable, PermitTimeout, TargetLimiter

log = logging.getLogger("smtp_checks.worker")

# Keys whose values are never copied into a dead letter: an invalid message may carry a
# password its producer should not have put there.
_SECRET_WORDS = ("pass", "secret", "token", "auth", "credential")
# Permits are leases: a dead worker's permit frees itself this long after the check's timeout.
_LEASE_MARGIN = 5.0


@dataclass(frozen=True)
class DeadLetter:
    """A message that is not a valid CheckRequest: kept for an operator, never run."""

    reason: str
    errors: tuple[str, ...]  # "location: message", without the offending values
    message: Any  # the message with secret-looking values redacted

    def as_json(self) -> dict[str, Any]:
        return {"reason": self.reason, "errors": list(self.errors), "message": self.message}


def task_payload(task: object, body: object) -> object:
    """The CheckRequest of a Celery task message (protocol 2 body: [args, kwargs, embed]).
    A message of another task, or of another shape, is kept whole to be dead-lettered."""
    if task != CHECK_TASK:
        return {"task": task, "body": body}
    if isinstance(body, list | tuple) and body and isinstance(body[0], list | tuple):
        kwargs = body[1] if len(body) > 1 and isinstance(body[1], dict) else {}
        return request_payload(body[0], kwargs)
    return body


def request_payload(args: Sequence[object], kwargs: Mapping[str, object]) -> object:
    """The CheckRequest of a check task's arguments: its one positional argument. Anything
    else is malformed and kept whole, to be dead-lettered as such."""
    if len(args) == 1 and not kwargs:
        return args[0]
    return {"args": list(args), **kwargs}


class CheckRunner:
    """What a worker process does with each message; shared by all its checks."""

    def __init__(self, limiter: TargetLimiter | None) -> None:
        # None only where no Redis is at hand (tests of the runner alone).
        self._limiter = limiter

    async def run(
        self, raw: object, *, worker: str, redelivered: bool = False
    ) -> CheckResult | DeadLetter:
        received_at = time.time()
        try:
            request = CheckRequest.model_validate(raw)
        except ValidationError as error:
            return _dead_letter(raw, error)
        handling = Handling(
            worker=worker,
            received_at=received_at,
            queue_wait=max(0.0, received_at - request.scheduled_for),
            redelivered=redelivered,
        )
        if received_at >= request.stale_at:
            late = received_at - request.scheduled_for
            log.info(
                "dropped stale check %s run %s (%.1fs late)", request.check_id, request.run_id, late
            )
            return CheckResult.not_run(
                request,
                handling,
                Outcome.STALE,
                f"not started: taken by the worker {late:.0f}s after its scheduled time, "
                "past its next run",
            )
        try:
            password = resolve_secret(request.password_ref) if request.password_ref else None
        except SecretNotFound as error:
            return CheckResult.not_run(
                request, handling, Outcome.CREDENTIAL, f"{error} on {worker}"
            )
        return await self._probe(request, handling, password)

    async def run_and_publish(
        self, raw: object, publisher: ResultPublisher, *, worker: str, redelivered: bool
    ) -> CheckResult | DeadLetter:
        """`run`, then publish a result (a dead letter is the caller's: it goes through the
        broker, from the broker's thread)."""
        outcome = await self.run(raw, worker=worker, redelivered=redelivered)
        if isinstance(outcome, CheckResult):
            await publisher.publish(outcome)
        return outcome

    async def _probe(
        self, request: CheckRequest, handling: Handling, password: str | None
    ) -> CheckResult:
        timeout = request.target.timeout
        deadline = time.monotonic() + timeout
        target = f"{request.target.address}:{request.target.port}"
        if self._limiter is None:
            return await _probe_now(request, handling, password, deadline)
        try:
            async with self._limiter.permit(
                target, deadline=deadline, lease=timeout + _LEASE_MARGIN
            ) as waited:
                handling = replace(handling, permit_wait=waited)
                return await _probe_now(request, handling, password, deadline)
        except PermitTimeout as error:
            return CheckResult.not_run(request, handling, Outcome.THROTTLED, str(error))
        except LimiterUnavailable as error:
            # Fail open: a Redis outage must not blind monitoring; the limits protect servers
            # from bursts, which one outage does not create.
            log.warning(
                "per-target limits unavailable, probing %s without a permit: %s", target, error
            )
            return await _probe_now(request, handling, password, deadline)


async def _probe_now(
    request: CheckRequest, handling: Handling, password: str | None, deadline: float
) -> CheckResult:
    started_at = time.time()
    probe = await run_probe(request.probe_spec(password), deadline=deadline)
    return CheckResult.from_probe(request, handling, probe, started_at)


def _dead_letter(raw: object, error: ValidationError) -> DeadLetter:
    errors = tuple(
        f"{'.'.join(str(part) for part in details['loc']) or '(message)'}: {details['msg']}"
        for details in error.errors(include_input=False, include_url=False)
    )
    log.warning("dead-lettered an invalid check request: %s", "; ".join(errors))
    return DeadLetter("invalid CheckRequest", errors, redact(raw))


def redact(value: Any) -> Any:
    """`value` with every secret-looking key's value replaced, recursively."""
    if isinstance(value, dict):
        return {
            key: "<redacted>"
            if isinstance(key, str) and any(word in key.lower() for word in _SECRET_WORDS)
            else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value
