"""`smtp-checks consumer --config FILE`: consume results, track state, forward to Centreon.

One process: the result reader in the main thread, one deliverer thread per forwarder
(consumer/service.py). SIGTERM or Ctrl-C stops it cleanly: the batch being recorded is
finished and acknowledged, deliverers finish their current batch, and whatever is still in
an outbox stays there for the next start.
"""

from __future__ import annotations

import argparse
import logging
import signal
from types import FrameType

from smtp_checks.cli.metrics_option import add_metrics_option
from smtp_checks.consumer.service import ConsumerService
from smtp_checks.shared import role_logging
from smtp_checks.shared.config import load_config
from smtp_checks.shared.metrics import start_role_metrics

log = logging.getLogger("smtp_checks.consumer")


def run_consumer(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="smtp-checks consumer", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--config", required=True, help="the YAML configuration file")
    parser.add_argument("--loglevel", default="INFO")
    add_metrics_option(parser)
    args = parser.parse_args(argv)
    role_logging.configure(args.loglevel)
    service = ConsumerService(load_config(args.config))
    start_role_metrics("consumer", args.metrics)
    if not service.deliverers:
        log.warning("no forwarder configured (centreon.forwarders): results are tracked only")

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("stopping (signal %d)", signum)
        service.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    service.run()
    log.info("stopped: %s", dict(service.processor.counts))
    return 0
