"""Probe cost in process: login checks per second with N in flight, and CPU per check.

The server (aiosmtpd) runs in another process; the CPU figure is this process's only, i.e.
what the probe itself costs. Usage: python -m bench.probe_throughput [--checks N]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench.servers import server_process
from shared.probe import run_probe
from shared.probe_spec import ProbeSpec, TlsMode, TlsSettings


async def _run(port: int, checks: int, in_flight: int) -> tuple[float, float, int]:
    spec = ProbeSpec(host="127.0.0.1", port=port, tls=TlsSettings(mode=TlsMode.NONE), timeout=30)
    gate = asyncio.Semaphore(in_flight)
    failures = 0

    async def one() -> None:
        nonlocal failures
        async with gate:
            result = await run_probe(spec)
            failures += result.failure is not None

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one() for _ in range(checks)))
    return time.perf_counter() - wall, time.process_time() - cpu, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checks", type=int, default=2000)
    args = parser.parse_args()
    print("in_flight  checks/s  cpu_ms/check  failures")
    with server_process() as port:
        asyncio.run(_run(port, 200, 10))  # warm-up
        for in_flight in (1, 10, 100):
            wall, cpu, failures = asyncio.run(_run(port, args.checks, in_flight))
            rate = args.checks / wall
            print(f"{in_flight:9d}  {rate:8.0f}  {cpu / args.checks * 1000:12.3f}  {failures:8d}")


if __name__ == "__main__":
    main()
