"""The probe's CPU per plain login check, this tree against another checkout of the project,
side by side in ABBA order (old, new, new, old, ...): a shared machine drifts, and whichever
runs second in every pair is otherwise at a systematic (dis)advantage.

Each run is a child process importing the probe of its own tree (PYTHONPATH), against one
aiosmtpd server of this tree (the same server for both), 100 checks in flight after a
warm-up; the figure is the child's own CPU (time.process_time) per check.

Usage: python -m bench.probe_side_by_side --other /tmp/oldtree [--pairs 6] [--checks 4000]
(make the other tree with `git worktree add /tmp/oldtree COMMIT`).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

from bench.servers import server_process

_CHILD = """
import asyncio, sys, time
from smtp_checks.shared.probe.asyncio_driver import run_probe
from smtp_checks.shared.probe.spec import ProbeSpec, TlsMode, TlsSettings

async def main(port: int, checks: int, in_flight: int) -> float:
    spec = ProbeSpec(host="127.0.0.1", port=port, tls=TlsSettings(mode=TlsMode.NONE), timeout=30)
    gate = asyncio.Semaphore(in_flight)
    async def one() -> None:
        async with gate:
            result = await run_probe(spec)
            assert result.failure is None, result.failure
    await asyncio.gather(*(one() for _ in range(300)))  # warm-up
    cpu = time.process_time()
    await asyncio.gather(*(one() for _ in range(checks)))
    return (time.process_time() - cpu) / checks * 1000

print(f"{asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), 100)):.4f}")
"""


def cpu_ms_per_check(tree: Path, port: int, checks: int) -> float:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(port), str(checks)],
        cwd=tree, env={"PYTHONPATH": str(tree)}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--other", type=Path, required=True, help="the other checkout")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--checks", type=int, default=4000)
    args = parser.parse_args()
    trees = {"other": args.other.resolve(), "this": Path(__file__).resolve().parents[1]}
    ratios = []
    with server_process(tls="none") as server:
        print("pair  first  other_ms  this_ms  this/other", flush=True)
        for pair in range(1, args.pairs + 1):
            order = ["other", "this"] if pair % 2 else ["this", "other"]
            figures = {
                name: cpu_ms_per_check(trees[name], server.port, args.checks) for name in order
            }
            ratio = figures["this"] / figures["other"]
            ratios.append(ratio)
            print(f"{pair:4d}  {order[0]:5s}  {figures['other']:8.4f}  {figures['this']:7.4f}"
                  f"  {ratio:10.3f}", flush=True)  # fmt: skip
    print(f"median this/other: {statistics.median(ratios):.3f} over {len(ratios)} pairs")


if __name__ == "__main__":
    main()
