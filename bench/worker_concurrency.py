"""Worker concurrency: checks in flight, completed per second and memory of ONE
`smtp-checks worker` process against slow servers (each session held `--hold` seconds).

Two server processes (bench/hold_server.py, a bare asyncio SMTP responder) answer QUIT
exactly `--hold` s after they accepted the session, hosts split across them, target limits
set high. Round 1: `--checks` requests are
published before the worker starts; later rounds are published at once to the running
worker (same process, so RSS growth between rounds shows). Per round:

- in flight: the maximum of concurrent sessions seen by the servers (session records of
  both servers merged), and the same computed from the results' started_at/ended_at;
- completed/s: results from the first to the last of the round, and the best 1 s window;
- RSS of the worker (/proc VmRSS, sampled every 0.1 s) and its CPU;
- `time` - hold: the check's measured time against the nominal hold, in ms (p50/p99/max),
  beside how late the servers themselves answered QUIT (p99);
- `time` - real: each check against its own session's real delay, from the moment the
  worker started it (`started_at`, just before connecting) to the moment its server sent
  the QUIT reply: how late the worker noticed the reply, the error of `time` itself. Each
  result is paired with its session: same server, same place in that server's order of
  connections (the kernel accepts in connect order, and a check takes `started_at` in the
  same step as its connect).

Usage: python -m bench.worker_concurrency [--checks 3000] [--concurrency 1000] [--rounds 2]
Redis database 10 of 127.0.0.1:6379 is flushed before and after: do not point it at data.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any

from bench.worker_throughput import (
    ServerChild,
    child_server,
    decode_results,
    flushed_db,
    prefill,
    proc_cpu,
    proc_rss_mb,
    published,
    results_key,
    worker_process,
    write_config,
)


def hold_server(hold: float) -> AbstractContextManager[ServerChild]:
    """bench/hold_server.py in a child process, stopped on exit."""
    return child_server([sys.executable, "-m", "bench.hold_server", str(hold)])


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    best = current = 0
    for _, step in events:
        current += step
        best = max(best, current)
    return best


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def best_window(times: list[float], width: float = 1.0) -> int:
    """The most of `times` (sorted) inside any window of `width` seconds."""
    best, low = 0, 0
    for high, at in enumerate(times):
        while at - times[low] > width:
            low += 1
        best = max(best, high - low + 1)
    return best


HEADER = (
    "round  checks  in_flight(srv)  in_flight(res)  done/s  best_1s  rss_MB(start/max/end)  "
    "cpu_ms/check  time-hold ms p50/p99/max  srv late p99  time-real ms p50/p99/max  failures"
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )  # fmt: skip
    parser.add_argument("--checks", type=int, default=3000, help="requests per round (3000)")
    parser.add_argument("--concurrency", type=int, default=1000, help="worker --concurrency")
    parser.add_argument("--rounds", type=int, default=2, help="rounds on one worker (2)")
    parser.add_argument("--hold", type=float, default=2.0, help="server hold, seconds (2)")
    parser.add_argument(
        "--hosts", type=int, default=3000,
        help="configured hosts (3000: the result queue, bounded by them, keeps every result)",
    )  # fmt: skip
    parser.add_argument("--loglevel", default="INFO", help="worker --loglevel (INFO)")
    parser.add_argument("--timeout", type=float, default=300, help="per round, seconds")
    parser.add_argument(
        "--rate", type=float, default=0.0,
        help="publish rounds after the first at this many checks a second, spread as the beat "
        "spreads checks over their interval (default: all at once, the worst case)",
    )  # fmt: skip
    args = parser.parse_args()

    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-c-")))
        servers = [stack.enter_context(hold_server(args.hold)) for _ in range(2)]
        client = stack.enter_context(flushed_db())
        # A 2 s session with a 30 s timeout: the default; hosts split over both servers.
        deployment = write_config(directory, [s.port for s in servers], args.hosts)
        ports = {host.name: host.port for host in deployment.config.hosts}
        prefill(deployment, args.checks)
        log = directory / "worker.log"
        worker = stack.enter_context(
            worker_process(
                deployment.path, concurrency=args.concurrency, loglevel=args.loglevel, log=log
            )
        )
        print(HEADER, flush=True)
        time.sleep(1.0)  # round 1's "start" RSS: the worker after its imports
        rss_start = proc_rss_mb(worker.pid)
        for round_number in range(1, args.rounds + 1):
            if round_number > 1:
                for server in servers:  # every session of the last round has ended
                    server.command("reset")
                if args.rate:
                    threading.Thread(
                        target=prefill, args=(deployment, args.checks, args.rate), daemon=True
                    ).start()
                else:
                    prefill(deployment, args.checks)  # at once, to the running worker
            target = round_number * args.checks
            deadline = time.perf_counter() + args.timeout
            rss_max, cpu_start = rss_start, proc_cpu(worker.pid)
            while (done := published(client, results_key())) < target:
                if worker.poll() is not None:
                    sys.exit(f"worker exited with {worker.returncode}; see {log}")
                if time.perf_counter() > deadline:
                    sys.exit(f"only {done}/{target} results after {args.timeout}s")
                rss_max = max(rss_max, proc_rss_mb(worker.pid))
                time.sleep(0.1)
            cpu = proc_cpu(worker.pid) - cpu_start
            time.sleep(0.5)  # let the servers see the last sessions close
            rss_end = proc_rss_mb(worker.pid)
            rss_max = max(rss_max, rss_end)
            results = decode_results(client)[-args.checks :]  # oldest first: this round last
            report(args, round_number, results, servers, ports, rss_start, rss_max, rss_end, cpu)
            rss_start = rss_end


def report(
    args: argparse.Namespace,
    round_number: int,
    results: list[dict[str, Any]],
    servers: list[ServerChild],
    ports: dict[str, int],
    rss_start: float,
    rss_max: float,
    rss_end: float,
    cpu: float,
) -> None:
    sessions: list[tuple[float, float]] = []
    server_late: list[float] = []  # ms between the hold's end and the server's QUIT reply
    error: list[float] = []  # ms between the server's QUIT reply and the worker's end of `time`
    for server in servers:
        records = server.command("stats")["sessions"]
        for started, ended, replied in records:
            if ended is not None:
                sessions.append((started, ended))
            if replied is not None:
                server_late.append((replied - started - args.hold) * 1000)
        mine = sorted(
            (r for r in results if ports[r["identity"]["host"]] == server.port),
            key=lambda r: r["started_at"],
        )
        if len(mine) == len(records) and all(r["outcome"] == "success" for r in mine):
            for result, (_, _, replied) in zip(mine, sorted(records), strict=True):
                error.append((result["started_at"] + result["time"] - replied) * 1000)
    ok = [r for r in results if r["outcome"] == "success"]
    failures = len(results) - len(ok)
    if failures:
        kinds = sorted({(r["outcome"], r.get("detail", "")[:80]) for r in results
                        if r["outcome"] != "success"})  # fmt: skip
        print(f"  ({failures} failures: {kinds[:3]})", file=sys.stderr)
    ends = sorted(r["ended_at"] for r in results)
    late = [(r["time"] - args.hold) * 1000 for r in ok]
    in_flight_results = max_overlap([(r["started_at"], r["ended_at"]) for r in ok])
    print(
        f"{round_number:5d}  {len(results):6d}  {max_overlap(sessions):14d}  "
        f"{in_flight_results:14d}  {(len(ends) - 1) / (ends[-1] - ends[0]):6.0f}  "
        f"{best_window(ends):7d}  {rss_start:7.0f}/{rss_max:4.0f}/{rss_end:4.0f}         "
        f"{cpu / len(results) * 1000:12.3f}  "
        f"{percentile(late, 0.5):8.1f}/{percentile(late, 0.99):6.1f}/{max(late):6.1f}        "
        f"{percentile(server_late, 0.99):11.1f}  "
        f"{percentile(error, 0.5):9.1f}/{percentile(error, 0.99):6.1f}/{max(error, default=0):6.1f}"
        f"  {failures:8d}",
        flush=True,
    )


if __name__ == "__main__":
    main()
