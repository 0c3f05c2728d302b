#!/usr/bin/env python3
"""Memory under attack: many connections hold bodies just under, at and over the limit,
with honest, lying and missing content-length, against the example server on loopback.

    python3 scripts/attack-memory.py [--connections 256] [--hold 5]

Prints the server's RSS before, at its peak and after each phase, next to the bound the
security choices (docs/security.md) state: the layer's buffer budget (64 MiB by default)
+ a constant for hyper's per-connection state and the allocator (64 MiB, measured at 512
and 2,048 connections), whatever the number of connections.
Bounded in time: each phase holds its connections for --hold seconds.

glibc keeps freed 1 MiB blocks in the heap once it has raised its mmap threshold, so RSS
would stay high after an attack although nothing leaks (the memory is reused, as the
repeated phases show). The server runs with MALLOC_MMAP_THRESHOLD_=131072, which keeps
large buffers in mmap so that they go back to the system when freed;
--glibc-default-threshold shows the other behaviour.
"""
import argparse
import asyncio
import time

from common import ROOT, build_example, memory_mib, signed_head, start, stop

LIMIT = 1024 * 1024
BUDGET_MIB = 64
CONSTANT_MIB = 64
PORT = 8120


async def client(phase: str, hold: float, results: dict) -> None:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", PORT), 10)
    except (OSError, asyncio.TimeoutError):
        results["refused"] = results.get("refused", 0) + 1
        return
    body = b"x" * (LIMIT - 1) if phase != "over-declared" else b"x" * (LIMIT + 1)
    try:
        if phase == "under-stalled":
            # Declares and sends all but the last byte, then stalls: the worst honest case.
            writer.write(signed_head(body))
            writer.write(body[:-1])
        elif phase == "over-declared":
            writer.write(signed_head(body))
        elif phase == "lying-short":
            # Declares 100 bytes, sends the whole megabyte anyway.
            writer.write(signed_head(body, length=100) + body)
        elif phase == "chunked-over":
            # No length: streams chunks past the limit.
            writer.write(signed_head(body, length=-1))
            chunk = b"x" * 65536
            for _ in range(LIMIT // len(chunk) + 2):
                writer.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        await asyncio.wait_for(writer.drain(), hold + 10)
        status_line = await asyncio.wait_for(reader.readline(), hold)
        status = status_line.split(b" ")[1].decode() if status_line else "closed"
    except asyncio.TimeoutError:
        status = "held"
    except (ConnectionError, IndexError):
        status = "closed"
    finally:
        writer.close()
    results[status] = results.get(status, 0) + 1


async def phase(name: str, connections: int, hold: float, pid: int) -> None:
    results: dict = {}
    before = memory_mib(pid)["VmRSS"]
    peak = before
    tasks = [asyncio.create_task(client(name, hold, results)) for _ in range(connections)]
    while not all(task.done() for task in tasks):
        peak = max(peak, memory_mib(pid)["VmRSS"])
        await asyncio.sleep(0.1)
    await asyncio.sleep(1)
    after = memory_mib(pid)["VmRSS"]
    print(f"| {name} | {connections} | {dict(sorted(results.items()))} | {before:.0f} | "
          f"{peak:.0f} | {after:.0f} |", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--hold", type=float, default=5)
    parser.add_argument("--glibc-default-threshold", action="store_true")
    args = parser.parse_args()

    env = {} if args.glibc_default_threshold else {"MALLOC_MMAP_THRESHOLD_": "131072"}
    server = start(build_example("server"), PORT, env=env)
    try:
        time.sleep(0.5)
        baseline = memory_mib(server.pid)["VmRSS"]
        bound = baseline + BUDGET_MIB + CONSTANT_MIB
        print(f"server baseline RSS {baseline:.0f} MiB; stated bound (baseline + budget "
              f"{BUDGET_MIB} MiB + {CONSTANT_MIB} MiB): {bound:.0f} MiB\n")
        print("| phase | connections | answers | RSS before (MiB) | peak RSS (MiB) | RSS after (MiB) |")
        print("|---|---|---|---|---|---|")
        phases = ["under-stalled", "over-declared", "lying-short", "chunked-over"] * 2
        for name in phases + ["under-stalled"]:
            await phase(name, args.connections, args.hold, server.pid)
        peak = memory_mib(server.pid)["VmHWM"]
        verdict = "within" if peak <= bound else "OVER"
        print(f"\npeak RSS over the whole run (VmHWM): {peak:.0f} MiB, {verdict} the bound")
    finally:
        stop(server)


if __name__ == "__main__":
    asyncio.run(main())
