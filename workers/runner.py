"""Run one check request on a worker and always end with a CheckResult or a dead letter.

The order of the steps is the point: validate the message; drop it if it is stale (it
must not run late); resolve the credential here, from the worker's own environment; wait
for a per-target permit; probe. The check's timeout bounds the permit wait and the probe
together, while `time` counts only the probe (the server's time).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from smtp_checks.shared.messages import CheckRequest, CheckResult, Handling, Outcome
from smtp_checks.shared.probe.asyncio_driver import run_probe
from smtp_checks.shared.redaction import redact_fields
from smtp_checks.shared.secrets import SecretNotFound, resolve_secret
from smtp_checks.workers.target_limits import LimiterUnavailable, PermitTimeout, TargetLimiter

log = logging.getLogger("smtp_checks.worker")

# Permits are leases: a dead worker's permit frees itself this long after the check's timeout.
_LEASE_MARGIN = 5.0


MAX_LETTER_BYTES = 4096  # of the message kept in a dead letter: garbage can be megabytes


@dataclass(frozen=True)
class DeadLetter:
    """A message that is not a valid CheckRequest: kept for an operator, never run."""

    reason: str
    errors: tuple[str, ...]  # "location: message", without the offending values
    message: Any  # the message with secret-looking values redacted

    def as_json(self) -> str:
        """The letter as kept: reason and errors whole, the message cut to a bounded size."""
        message = json.dumps(self.message, default=str)
        kept: Any = self.message
        if len(message) > MAX_LETTER_BYTES:
            kept = f"{message[:MAX_LETTER_BYTES]}... ({len(message)} bytes, cut)"
        return json.dumps({"reason": self.reason, "errors": list(self.errors), "message": kept})


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
    return DeadLetter("invalid CheckRequest", errors, redact_fields(raw))
