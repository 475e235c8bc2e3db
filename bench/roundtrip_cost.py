"""Round trips through the whole pipeline: the workers' CPU per round trip, and how many
round trips are in progress while the workers hold how many checks in flight.

Every role a real process (tests/e2e/pipeline.py: its own Redis, a Nagios 4 core), two
sites: `paris` sends, `lyon` reads the mailbox. N hosts, each a `roundtrip` check through
one SMTP server (aiosmtpd) that delivers into a real Dovecot (tests/mail_path.py), looked
for over IMAPS. Two runs:

- `prompt`: delivered at once: the send and one look per round trip;
- `held`: every message held `--hold` seconds by the delivery path: N round trips in
  progress at once, each looked for 1, 3, 7, 15... s after its send.

For each: the workers' CPU (user + system, both worker processes, from /proc) from the
start to the last verdict in Nagios, per round trip; the looks the round trips took; the
round trips in progress (`smtp-checks:roundtrips`) and the checks the two workers had in
flight (their `smtp_checks_checks_in_flight` gauges), sampled every 0.1 s: the most at once,
and the mean over the run. In flight counts a check from its start to its result, permit
wait included (the per-target limit lets 20 sessions at a time reach the one SMTP server
and the one Dovecot): a round trip in progress holds no worker slot between its looks.

Usage: python -m bench.roundtrip_cost [--round-trips 200] [--hold 10]
"""

from __future__ import annotations

import argparse
import re
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.worker_throughput import proc_cpu
from smtp_checks.shared.keys import KEYS
from tests.dovecot import DovecotInstance
from tests.e2e.pipeline import Pipeline, host
from tests.mail_path import MailPath
from tests.smtp_servers import Pki

_IN_FLIGHT = re.compile(rb"^smtp_checks_checks_in_flight\{[^}]*\} ([\d.e+]+)$", re.MULTILINE)


@dataclass
class Figures:
    round_trips: int
    cpu_ms: float  # both workers, per round trip
    looks: int
    most_in_progress: int
    most_in_flight: int
    mean_in_progress: float
    mean_in_flight: float
    seconds: float


class Sampler(threading.Thread):
    """The most round trips in progress, and checks in flight, seen every 0.1 s."""

    def __init__(self, pipeline: Pipeline) -> None:
        super().__init__(daemon=True)
        self.pipeline = pipeline
        self.stopped = threading.Event()
        self.most_in_progress = self.most_in_flight = 0
        self.samples = 0
        self.in_progress_sum = self.in_flight_sum = 0

    def run(self) -> None:
        urls = [self.pipeline.metrics_url(name) for name in self.pipeline.workers()]
        while not self.stopped.wait(0.1):
            in_progress = int(self.pipeline.client.hlen(KEYS.roundtrips))
            self.most_in_progress = max(self.most_in_progress, in_progress)
            in_flight = 0
            for url in urls:
                try:
                    with urllib.request.urlopen(url, timeout=2) as response:
                        in_flight += sum(int(float(v)) for v in _IN_FLIGHT.findall(response.read()))
                except OSError:
                    continue
            self.most_in_flight = max(self.most_in_flight, in_flight)
            self.samples += 1
            self.in_progress_sum += in_progress
            self.in_flight_sum += in_flight

    def mean(self, total: int) -> float:
        return total / self.samples if self.samples else 0.0


def run(directory: Path, dovecot: DovecotInstance, pki: Pki, count: int, hold: float) -> Figures:
    recipient = "probe+late@example.test" if hold else "probe@example.test"
    with MailPath(dovecot, late_seconds=hold) as path:
        check = {
            "from": "monitor@example.test",
            "to": [recipient],
            "receive": {
                "protocol": "imap", "address": "127.0.0.1", "port": dovecot.ports["imaps"],
                "ca_file": str(pki.ca_pem_path), "username": "probe", "password": "env:BENCH_PW",
                "site": "lyon", "timeout": max(30, 3 * hold),
            },
        }  # fmt: skip
        hosts = [
            host(f"rt-{n:04d}", "paris", path.port, {"roundtrip": check}, interval=600)
            for n in range(count)
        ]
        pipeline = Pipeline(directory, hosts, timeout=10.0, concurrency=500, metrics=True)
        pipeline.env["BENCH_PW"] = "probe-secret"
        try:
            pipeline.start(roles=[name for name in pipeline.roles if name != "beat"])
            workers = [pipeline.roles[name].process for name in pipeline.workers()]
            cpu_before = sum(proc_cpu(p.pid) for p in workers if p)
            sampler = Sampler(pipeline)
            sampler.start()
            started = time.monotonic()
            pipeline.start_role("beat")
            pipeline.wait_for_services(
                lambda block: block.get("has_been_checked") == "1",
                120 + 3 * hold,
                "every round trip has its verdict",
            )
            seconds = time.monotonic() - started
            cpu = sum(proc_cpu(p.pid) for p in workers if p) - cpu_before
            sampler.stopped.set()
            sampler.join()
            looks = len(re.findall(r"roundtrip/receive run", pipeline.log("beat")))
            verdicts = pipeline.nagios.services()
            assert all(block["current_state"] == "0" for block in verdicts.values()), verdicts
        finally:
            pipeline.close()
    return Figures(
        count,
        cpu / count * 1000,
        looks,
        sampler.most_in_progress,
        sampler.most_in_flight,
        sampler.mean(sampler.in_progress_sum),
        sampler.mean(sampler.in_flight_sum),
        seconds,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )  # fmt: skip
    parser.add_argument("--round-trips", type=int, default=200)
    parser.add_argument("--hold", type=float, default=10.0)
    args = parser.parse_args()
    pki = Pki()
    try:
        with (
            DovecotInstance(
                {"probe": "probe-secret"}, pki.cert_paths["trusted"], pki.key_paths["trusted"]
            ) as dovecot,
            tempfile.TemporaryDirectory(prefix="smtp-checks-bench-rt-") as tmp,
        ):
            print(f"{args.round_trips} round trips, sent from paris, looked for from lyon")
            print("run     cpu ms/round trip  looks/round trip  in progress: most  mean  "
                  "in flight: most  mean  seconds")  # fmt: skip
            for name, hold in (("prompt", 0.0), ("held", args.hold)):
                figures = run(Path(tmp) / name, dovecot, pki, args.round_trips, hold)
                looks = figures.looks / figures.round_trips
                print(
                    f"{name:<7} {figures.cpu_ms:17.2f}  {looks:16.2f}  "
                    f"{figures.most_in_progress:17d}  {figures.mean_in_progress:4.0f}  "
                    f"{figures.most_in_flight:15d}  {figures.mean_in_flight:4.0f}  "
                    f"{figures.seconds:7.1f}"
                )
    finally:
        pki.cleanup()


if __name__ == "__main__":
    main()
