"""Run one check request on a worker and always end with a CheckResult or a dead letter.

Two steps, with the ledger between them (workers/core.py): `accept` validates the message
(an invalid one becomes a dead letter) and notes how it was handled; then, unless the
ledger says a newer run of the same check has superseded it, `run` resolves the credential
here, from the worker's own environment, waits for a per-target permit and probes. A run
is never dropped for being late: however long it waited in the queue, it is the newest
measurement anyone asked for (shared/ledger.py). The check's timeout bounds the permit
wait and the probe together, while `time` counts only the probe (the server's time). Each
result carries its plugin status, worked out here as the consumer would, so that a backlog
of results can be compacted without losing a state change (shared/result_queue.py).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from smtp_checks.shared.mailbox.look import look_for
from smtp_checks.shared.messages import CheckRequest, CheckResult, Handling, Outcome
from smtp_checks.shared.probe.asyncio_driver import run_probe
from smtp_checks.shared.redaction import redact_fields
from smtp_checks.shared.result_output import result_output
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


@dataclass(frozen=True)
class Accepted:
    """A valid request taken off the queue, with how the worker received it."""

    request: CheckRequest
    handling: Handling


class CheckRunner:
    """What a worker process does with each message; shared by all its checks."""

    def __init__(self, limiter: TargetLimiter | None) -> None:
        # None only where no Redis is at hand (tests of the runner alone).
        self._limiter = limiter

    @staticmethod
    def accept(raw: object, *, worker: str, redelivered: bool = False) -> Accepted | DeadLetter:
        """The request of a message, or the dead letter of an invalid one."""
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
        return Accepted(request, handling)

    async def run(self, accepted: Accepted) -> CheckResult:
        """Probe an accepted request; its result, with its plugin status."""
        return with_status(await self._run(accepted.request, accepted.handling))

    async def _run(self, request: CheckRequest, handling: Handling) -> CheckResult:
        try:
            password = resolve_secret(request.password_ref) if request.password_ref else None
        except SecretNotFound as error:
            return CheckResult.not_run(
                request, handling, Outcome.CREDENTIAL, f"{error} on {handling.worker}"
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
    if request.receive is not None:  # a round trip's receive step: one look
        spec, wanted = request.mailbox_spec(password)
        look = await look_for(spec, wanted, deadline=deadline)
        return CheckResult.from_look(request, handling, look, started_at)
    probe = await run_probe(request.probe_spec(password), deadline=deadline)
    return CheckResult.from_probe(request, handling, probe, started_at)


def with_status(result: CheckResult) -> CheckResult:
    """`result` with the plugin status the consumer will give it."""
    return result.model_copy(update={"status": int(result_output(result).status)})


def _dead_letter(raw: object, error: ValidationError) -> DeadLetter:
    errors = tuple(
        f"{'.'.join(str(part) for part in details['loc']) or '(message)'}: {details['msg']}"
        for details in error.errors(include_input=False, include_url=False)
    )
    log.warning("dead-lettered an invalid check request: %s", "; ".join(errors))
    return DeadLetter("invalid CheckRequest", errors, redact_fields(raw))
