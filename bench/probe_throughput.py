"""Probe cost in process: login checks per second with N in flight, and CPU per check, in
clear text and with STARTTLS (certificate verified against a throw-away CA).

The server (aiosmtpd) runs in another process; the CPU figure is this process's only, i.e.
what the probe itself costs. Usage: python -m bench.probe_throughput [--checks N]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench.servers import server_process
from smtp_checks.shared.probe.asyncio_driver import run_probe
from smtp_checks.shared.probe.spec import ProbeSpec, TlsMode, TlsSettings


async def _run(spec: ProbeSpec, checks: int, in_flight: int) -> tuple[float, float, int]:
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
    print("session            in_flight  checks/s  cpu_ms/check  failures")
    for name, tls in (("plain", TlsMode.NONE), ("STARTTLS+verify", TlsMode.STARTTLS)):
        with server_process(tls=tls.value) as server:
            spec = ProbeSpec(
                host="127.0.0.1",
                port=server.port,
                tls=TlsSettings(mode=tls, ca_file=server.ca_file),
                timeout=30,
            )
            asyncio.run(_run(spec, 200, 10))  # warm-up
            for in_flight in (1, 10, 100):
                wall, cpu, failures = asyncio.run(_run(spec, args.checks, in_flight))
                print(
                    f"{name:17s}  {in_flight:9d}  {args.checks / wall:8.0f}  "
                    f"{cpu / args.checks * 1000:12.3f}  {failures:8d}"
                )


if __name__ == "__main__":
    main()
