"""Keep the garbage collector's pauses out of `time`.

A full collection stops the event loop while it walks every object, and a reply that
arrives meanwhile is read late. Measured at 400 checks a second with 850 in flight
(BENCHMARKS.md, "Workers"): full collections every 2 s, 40 to 90 ms each, were the whole p99
of `time`. So: freeze what startup made (about 50,000 objects that live as long as the
process) out of every collection, and collect the oldest generation ten times less often
(about every 30 s, some 20 ms). Young collections stay as they are (under 2 ms).
"""

from __future__ import annotations

import gc


def quiet_garbage_collector() -> None:
    """Call once the worker is set up, just before it starts checking."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 100)
