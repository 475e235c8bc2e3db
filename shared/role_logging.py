"""How the long-running roles (worker, consumer, beat) log: one format for all, since
operators grep them together and the end-to-end tests read their lines."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str) -> None:
    """Log to standard error at `level` (a name: DEBUG, INFO, WARNING...)."""
    logging.basicConfig(level=level.upper(), format=FORMAT)
    # httpx logs every request at INFO: one line per submit would drown what matters. Its
    # failures reach the forwarders, which log them in their own words.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
