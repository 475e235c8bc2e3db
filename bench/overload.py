"""Overload: a site asked for 3 times what it can run, then for half of it, into a real Nagios 4.

The issue's case, by default: 300 login checks every 5 s (60 a second) against a healthy
server that takes 0.5 s to answer (its banner is held), one worker at `--concurrency 10`
(20 checks a second at most). Every role is a real process (tests/e2e/pipeline.py: its own
redis-server, beat, worker, consumer, Nagios reading the command file). After
`--overload` seconds the config's interval becomes 6 times longer (SIGHUP to the beat): the
site is then asked for half what it can run, and the bench watches it recover.

It prints, for each phase: the share of services whose state in Nagios is a real
measurement (aim 100%), the UNKNOWNs Nagios got by reason (aim 0 while the worker lives),
each check's effective interval (between two of its results) against the configured one,
the depth of the queue (bounded by the number of checks), the memory of each role, the
skipped slots; and how long after the load fell the configured interval held again (no
slot skipped since).

Usage: python -m bench.overload [--checks 300] [--interval 5] [--hold 0.5] [--concurrency 10]
                                [--overload 300] [--calm 120]
"""

from __future__ import annotations

import argparse
import re
import signal
import statistics
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench.servers import server_process
from smtp_checks.shared.keys import KEYS
from tests.e2e.pipeline import Pipeline, host, wait_until

_UNKNOWN = re.compile(r"EXTERNAL COMMAND: PROCESS_SERVICE_CHECK_RESULT;[^;]+;[^;]+;3;([^|\n]*)")
ROLES = ("beat", "paris-1", "consumer")


@dataclass
class Phase:
    name: str
    asked_per_second: float
    started: float
    ended: float = 0.0
    measured_from: float = 0.0  # results before this are left out of the intervals
    depths: list[int] = field(default_factory=list)
    rss: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    skipped_at_start: int = 0
    skipped_at_end: int = 0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def skipped(pipeline: Pipeline) -> int:
    return int(pipeline.client.hget(KEYS.counters, "skipped_slots") or 0)


def watch(pipeline: Pipeline, phase: Phase, seconds: float) -> float | None:
    """Sample the queue, memory and skipped slots for `seconds`; when no slot was skipped
    from some moment to the end, how long after the phase's start that moment came."""
    phase.skipped_at_start = last = skipped(pipeline)
    last_skip_at = phase.started
    ends_at = time.time() + seconds
    while time.time() < ends_at:
        phase.depths.append(int(pipeline.client.llen("checks.paris")))
        for name in ROLES:
            process = pipeline.roles[name].process
            if process is not None:
                phase.rss[name].append(rss_mb(process.pid))
        phase.rss["redis"].append(float(pipeline.client.info("memory")["used_memory_rss"]) / 2**20)
        now_skipped = skipped(pipeline)
        if now_skipped != last:
            last, last_skip_at = now_skipped, time.time()
        time.sleep(1.0)
    phase.ended = time.time()
    phase.skipped_at_end = last
    return last_skip_at - phase.started if last_skip_at < phase.ended - 10 else None


def set_interval(pipeline: Pipeline, interval: int) -> None:
    settings = yaml.safe_load(pipeline.config_path.read_text())
    settings["defaults"]["interval"] = interval
    pipeline.config_path.write_text(yaml.safe_dump(settings, sort_keys=False))
    process = pipeline.roles["beat"].process
    assert process is not None
    process.send_signal(signal.SIGHUP)


def report(pipeline: Pipeline, phase: Phase, interval: int, checks: int, nagios_log: str) -> None:
    status = pipeline.nagios.services()
    real = sum(1 for block in status.values() if block.get("current_state") in {"0", "1", "2"})
    # By reason: the output's first words ("(service check orphaned", "no result for").
    unknowns = Counter(
        " ".join(output.removeprefix("UNKNOWN: ").split()[:3])
        for output in _UNKNOWN.findall(nagios_log)
    )
    ended: dict[str, list[float]] = defaultdict(list)
    for result in pipeline.published():
        if max(phase.started, phase.measured_from) <= result.ended_at <= phase.ended:
            ended[result.check_id].append(result.ended_at)
    gaps = [
        (max(times) - min(times)) / (len(times) - 1)  # the mean time between two results
        for times in ended.values()
        if len(times) > 1
    ]
    ran = sum(map(len, ended.values()))
    span = phase.ended - max(phase.started, phase.measured_from)
    print(
        f"{phase.name}: asked {phase.asked_per_second:.0f} checks/s for "
        f"{phase.ended - phase.started:.0f} s (rates and intervals over the last {span:.0f} s)"
    )
    print(f"  checks run                {ran / span:8.1f}/s")
    print(f"  services real in Nagios   {real:8} of {checks} ({100 * real / checks:.0f}%)")
    print(f"  UNKNOWNs in Nagios        {sum(unknowns.values()):8}  {dict(unknowns) or ''}")
    if gaps:
        print(
            f"  effective interval        p50 {statistics.median(gaps):6.1f} s   "
            f"max {max(gaps):6.1f} s   (configured {interval} s)"
        )
    print(
        f"  queue depth               p50 {statistics.median(phase.depths):6.0f}     "
        f"max {max(phase.depths):6}     (checks: {checks})"
    )
    print(f"  slots skipped             {phase.skipped_at_end - phase.skipped_at_start:8}")
    for name, samples in phase.rss.items():
        print(
            f"  memory {name:<18} start {samples[0]:6.1f} MB  end {samples[-1]:6.1f} MB  "
            f"max {max(samples):6.1f} MB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checks", type=int, default=300)
    parser.add_argument("--interval", type=int, default=5)
    parser.add_argument("--hold", type=float, default=0.5, help="seconds the server holds")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--overload", type=float, default=300.0, help="seconds at 3x")
    parser.add_argument("--calm", type=float, default=120.0, help="seconds at half capacity")
    args = parser.parse_args()
    capacity = args.concurrency / args.hold
    calm_interval = args.interval * 6
    with (
        server_process(banner_delay=args.hold) as server,
        tempfile.TemporaryDirectory(prefix="smtp-overload-") as directory,
    ):
        hosts = [host(f"mx{i:04}", "paris", server.port, {"login": {}}) for i in range(args.checks)]
        pipeline = Pipeline(
            Path(directory),
            hosts,
            workers={"paris": ["paris-1"]},
            interval=args.interval,
            timeout=max(2.0, 4 * args.hold),
            resend_interval=max(60, 3 * calm_interval),
            concurrency=args.concurrency,
        )
        with pipeline:
            print(
                f"{args.checks} login checks every {args.interval} s "
                f"({args.checks / args.interval:.0f}/s) on one worker at --concurrency "
                f"{args.concurrency} against a server holding {args.hold} s "
                f"(capacity {capacity:.0f}/s)"
            )
            pipeline.start()
            # Warm-up: every service has a first result (the first round, at capacity).
            wait_until(
                lambda: (
                    len(pipeline.nagios.last_checks()) == args.checks
                    and all(pipeline.nagios.last_checks().values())
                ),
                120 + args.checks / capacity,
                "a first result for every service",
            )
            overload = Phase("overload", args.checks / args.interval, time.time())
            watch(pipeline, overload, args.overload)
            log_at_overload_end = pipeline.nagios.log()
            report(pipeline, overload, args.interval, args.checks, log_at_overload_end)
            set_interval(pipeline, calm_interval)
            calm = Phase("half capacity", args.checks / calm_interval, time.time())
            recovered = watch(pipeline, calm, args.calm)
            if recovered is not None:  # the intervals once the backlog of slots has gone
                calm.measured_from = calm.started + recovered
            calm_log = pipeline.nagios.log()[len(log_at_overload_end) :]
            report(pipeline, calm, calm_interval, args.checks, calm_log)
            print(
                "  configured interval held  "
                + (f"{recovered:.0f} s after the load fell" if recovered is not None else "not yet")
            )
            orphans = len(pipeline.orphaned())
            starved = pipeline.log("consumer").count("no result for")
            print(f"orphans reported {orphans}, starved services reported {starved}")


if __name__ == "__main__":
    main()
