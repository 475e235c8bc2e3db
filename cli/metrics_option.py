"""The `--metrics HOST:PORT` option every long-running role takes (shared/metrics.py)."""

from __future__ import annotations

import argparse

from smtp_checks.shared.errors import SetupError
from smtp_checks.shared.metrics import parse_address


def add_metrics_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics", metavar="HOST:PORT", type=_address,
        help="serve Prometheus metrics at http://HOST:PORT/metrics (:PORT: every address)",
    )  # fmt: skip


def _address(text: str) -> str:
    """`text` if it is a HOST:PORT, else the reason, for argparse to print."""
    try:
        parse_address(text)
    except SetupError as error:
        raise argparse.ArgumentTypeError(str(error)) from error
    return text
