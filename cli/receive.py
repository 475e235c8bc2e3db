"""The receive side of `smtp-checks check --mode=roundtrip`, in the same process: look into
the mailbox, as the pipeline's receive steps do (shared/mailbox/), until the message is
found or the receive timeout has passed. Imported only for that mode (asyncio is slow to
import, and the other modes never need it)."""

from __future__ import annotations

import asyncio
import time

from smtp_checks.cli.receive_options import ReceiveOptions
from smtp_checks.shared.mailbox.delivery import FIRST_LOOK_DELAY, Delivery, next_look_at
from smtp_checks.shared.mailbox.look import look_for
from smtp_checks.shared.mailbox.spec import Wanted


def await_delivery(options: ReceiveOptions, wanted: Wanted, sent_at: float) -> Delivery:
    """The verdict on the message of `wanted.token`, sent (end of DATA) at `sent_at`."""
    return asyncio.run(_await(options, wanted, sent_at))


async def _await(options: ReceiveOptions, wanted: Wanted, sent_at: float) -> Delivery:
    verdict = Delivery(
        token=wanted.token,
        sent_at=sent_at,
        timeout=options.timeout,
        warning=options.warning,
        critical=options.critical,
    )
    spec = options.mailbox
    last_look_at: float | None = None
    await asyncio.sleep(max(0.0, min(sent_at + FIRST_LOOK_DELAY, verdict.deadline) - time.time()))
    looks = 0
    while True:
        looked_at = time.time()
        look = await look_for(spec, wanted)
        if look.failure is not None:
            return verdict.unknown(look.failure.detail)
        found = verdict.after_look(
            look.found_in, look.seen_at, ended_at=time.time(), junk=spec.junk,
            last_look_at=last_look_at, received=look.received,
        )  # fmt: skip
        if found is not None:
            return found
        looks, last_look_at = looks + 1, looked_at
        next_at = next_look_at(looked_at, looks, verdict.deadline)
        await asyncio.sleep(max(0.0, next_at - time.time()))
