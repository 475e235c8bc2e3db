"""`smtp-checks consumer --config FILE`: consume results, track state, forward to Centreon.

One process: the consumer loop in the main thread, one delivery thread per forwarder.
SIGTERM or Ctrl-C stops it cleanly: the batch being recorded is finished and acknowledged,
deliveries finish their current batch, and whatever is still in an outbox stays there
for the next start.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

import redis

from smtp_checks.consumer.delivery import Backoff, Delivery
from smtp_checks.consumer.forwarders.base import Forwarder
from smtp_checks.consumer.outbox import Outbox
from smtp_checks.consumer.processor import ResultConsumer, ResultProcessor
from smtp_checks.consumer.service_states import ServiceStates
from smtp_checks.shared import role_logging
from smtp_checks.shared.config import Config, ConfigError, load_config
from smtp_checks.shared.outstanding import Ledger
from smtp_checks.shared.result_queue import ResultQueue

log = logging.getLogger("smtp_checks.consumer")


def build_forwarders(config: Config) -> list[Forwarder]:
    from smtp_checks.shared import config as models  # noqa: PLC0415

    forwarders: list[Forwarder] = []
    for spec in config.centreon.forwarders:
        if isinstance(spec, models.CommandFileForwarder):
            from smtp_checks.consumer.forwarders.command_file import CommandFileForwarder  # noqa: PLC0415

            forwarders.append(CommandFileForwarder(spec.path, reader=spec.engine))
        elif isinstance(spec, models.ApiV2Forwarder):
            from smtp_checks.consumer.forwarders.api_v2 import ApiV2Forwarder  # noqa: PLC0415

            forwarders.append(ApiV2Forwarder.from_config(spec))
        else:
            from smtp_checks.consumer.forwarders.api_v1 import ApiV1Forwarder  # noqa: PLC0415

            forwarders.append(ApiV1Forwarder.from_config(spec))
    return forwarders


class ConsumerService:
    """The consumer with its deliveries, ready to run: what `consumer` and `run` start."""

    def __init__(self, config: Config, *, forwarders: list[Forwarder] | None = None) -> None:
        if config.state_redis_url is None:
            raise ValueError("the consumer needs Redis: set broker_url (Redis) or redis_url")
        self.config = config
        self.stop_event = threading.Event()
        client = redis.Redis.from_url(config.state_redis_url)
        centreon = config.centreon
        self.deliveries = [
            Delivery(
                Outbox(client, forwarder.name, max_length=centreon.outbox_max_length),
                forwarder,
                self.stop_event,
                backoff=Backoff(),
            )
            for forwarder in (build_forwarders(config) if forwarders is None else forwarders)
        ]
        states = ServiceStates(
            client,
            [delivery.outbox.key for delivery in self.deliveries],
            resend_interval=centreon.resend_interval,
        )
        self.processor = ResultProcessor(
            config,
            states,
            Ledger(client, grace=centreon.orphan_grace),
            on_forward=self._wake_deliveries,
        )
        states.forget_except(set(self.processor.known))
        self.consumer = ResultConsumer(ResultQueue(client), self.processor)

    def _wake_deliveries(self) -> None:
        for delivery in self.deliveries:
            delivery.wake()

    def run(self) -> None:
        """Consume until `stop()`; returns once everything in hand is recorded."""
        for delivery in self.deliveries:
            delivery.start()
        try:
            self.consumer.run()
        finally:
            self.stop_event.set()
            for delivery in self.deliveries:
                delivery.wake()
                delivery.join(timeout=30)

    def stop(self) -> None:
        self.consumer.should_stop = True


def run_consumer(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="smtp-checks consumer", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--config", required=True, help="the YAML configuration file")
    parser.add_argument("--loglevel", default="INFO")
    args = parser.parse_args(argv)
    role_logging.configure(args.loglevel)
    try:
        config = load_config(args.config)
        service = ConsumerService(config)
    except ConfigError as error:
        sys.stderr.write(f"{error}\n")
        return 2
    except ValueError as error:
        sys.stderr.write(f"{args.config}: {error}\n")
        return 2
    if not service.deliveries:
        log.warning("no forwarder configured (centreon.forwarders): results are tracked only")

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("stopping (signal %d)", signum)
        service.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    service.run()
    log.info("stopped: %s", dict(service.processor.counts))
    return 0
