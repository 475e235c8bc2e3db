"""The consumer assembled from the configuration, ready to run: the result reader in the
calling thread, one deliverer thread per forwarder. What `smtp-checks consumer` and
`smtp-checks run` start."""

from __future__ import annotations

import threading
import time

import redis

from smtp_checks.consumer.deliverer import Deliverer
from smtp_checks.consumer.forwarders.base import Forwarder
from smtp_checks.consumer.outbox import Outbox
from smtp_checks.consumer.processor import ResultProcessor, starve_after
from smtp_checks.consumer.result_reader import ResultReader
from smtp_checks.consumer.roundtrip_join import RoundTripJoin
from smtp_checks.consumer.self_check import NEVER_STARVED, SelfCheck
from smtp_checks.consumer.service_states import ServiceStates
from smtp_checks.shared import config as models
from smtp_checks.shared.adhoc_replies import AdhocReplies
from smtp_checks.shared.backoff import Backoff
from smtp_checks.shared.config import Config
from smtp_checks.shared.errors import SetupError
from smtp_checks.shared.heartbeats import live_sites, read_heartbeats
from smtp_checks.shared.keys import KEYS
from smtp_checks.shared.ledger import Ledger
from smtp_checks.shared.redis_client import broker_redis, connect, state_redis
from smtp_checks.shared.result_queue import ResultQueue, backlog_bound
from smtp_checks.shared.roundtrips import RoundTrips


def build_forwarders(config: Config) -> list[Forwarder]:
    """One forwarder per `centreon.forwarders` entry, in the file's order."""
    # Imported when configured: the API forwarders need httpx, the command file does not.
    forwarders: list[Forwarder] = []
    for spec in config.centreon.forwarders:
        if isinstance(spec, models.CommandFileForwarder):
            from smtp_checks.consumer.forwarders.command_file import (  # noqa: PLC0415
                CommandFileForwarder,
            )

            forwarders.append(CommandFileForwarder(spec.path, reader=spec.engine))
        elif isinstance(spec, models.ApiV2Forwarder):
            from smtp_checks.consumer.forwarders.api_v2 import ApiV2Forwarder  # noqa: PLC0415

            forwarders.append(ApiV2Forwarder.from_config(spec))
        else:
            from smtp_checks.consumer.forwarders.api_v1 import ApiV1Forwarder  # noqa: PLC0415

            forwarders.append(ApiV1Forwarder.from_config(spec))
    return forwarders


class ConsumerService:
    """The consumer with its deliverers. `forwarders` replaces the configured ones (tests)."""

    def __init__(self, config: Config, *, forwarders: list[Forwarder] | None = None) -> None:
        state = state_redis(config)
        if state is None:
            raise SetupError("the consumer needs Redis: set broker_url (Redis) or redis_url")
        self.config = config
        self.stop_event = threading.Event()
        client = connect(state)
        centreon = config.centreon
        self.deliverers = [
            Deliverer(
                Outbox(client, forwarder.name, max_length=centreon.outbox_max_length),
                forwarder,
                self.stop_event,
                backoff=Backoff(),
            )
            for forwarder in (build_forwarders(config) if forwarders is None else forwarders)
        ]
        checks = config.scheduled_checks()
        self_check = _self_check(config, client)
        pipeline_services = self_check.services() if self_check else []
        states = ServiceStates(
            client,
            [deliverer.outbox.key for deliverer in self.deliverers],
            resend_interval=centreon.resend_interval,
            starve_after={
                **{
                    (check.host, check.service): starve_after(check, centreon.resend_interval)
                    for check in checks
                },
                **dict.fromkeys(pipeline_services, NEVER_STARVED),
            },
        )
        roundtrips = RoundTripJoin(RoundTrips(client), AdhocReplies(client), checks)
        self.processor = ResultProcessor(
            config,
            states,
            Ledger(client, grace=centreon.orphan_grace),
            sites=lambda now: live_sites(read_heartbeats(client, now), now),
            on_forward=self._wake_deliverers,
            self_check=self_check,
            roundtrips=roundtrips if roundtrips.check_ids else None,
        )
        states.forget_except({*self.processor.known, *pipeline_services})
        _forget_forwarders_except(client, {d.forwarder.name for d in self.deliverers})
        self.processor.ledger.forget_checks_except(
            {check.check_id for check in checks} | roundtrips.check_ids
        )
        roundtrips.trips.forget_checks_except(roundtrips.check_ids)
        states.watch_starvation(list(self.processor.known), time.time())
        queue = ResultQueue(client, bound=backlog_bound(len(checks)))
        self.reader = ResultReader(queue, self.processor, client)

    def _wake_deliverers(self) -> None:
        for deliverer in self.deliverers:
            deliverer.wake()

    def run(self) -> None:
        """Consume until `stop()`; returns once everything in hand is recorded."""
        for deliverer in self.deliverers:
            deliverer.start()
        try:
            self.reader.run()
        finally:
            self.stop_event.set()
            for deliverer in self.deliverers:
                deliverer.wake()
                deliverer.join(timeout=30)

    def stop(self) -> None:
        self.reader.should_stop = True


def _self_check(config: Config, client: redis.Redis) -> SelfCheck | None:
    """The self-check of `centreon.self_check`, None when not configured."""
    if config.centreon.self_check is None:
        return None
    address = broker_redis(config)
    broker = None
    if address is not None:
        broker = client if address == state_redis(config) else connect(address)
    return SelfCheck(config, client, broker, host=config.centreon.self_check.host)


def _forget_forwarders_except(client: redis.Redis, names: set[str]) -> None:
    """Forget the delivery news of forwarders no longer configured (`status` reads them)."""
    kept = {name.encode() for name in names}
    gone = [name for name in client.hkeys(KEYS.outboxes) if name not in kept]
    if gone:
        client.hdel(KEYS.outboxes, *gone)
