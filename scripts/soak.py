#!/usr/bin/env python3
"""A bounded soak of the example server on loopback: keep-alive connections send signed
webhooks, half of them valid and half forged (tampered body, wrong secret, stale or
missing headers), for a fixed time.

    python3 scripts/soak.py [--seconds 60] [--connections 128]

Passes when no valid request was rejected, no forged one accepted, no answer was a 5xx,
and the server's RSS did not grow between the first and the last quarter of the run.
"""
import argparse
import asyncio
import json
import random
import statistics
import sys
import time

from common import SECRET, build_example, memory_mib, signature, start, stop

PORT = 8121


def valid_request(serial: int) -> bytes:
    kind = serial % 3
    if kind == 0:
        event_type, data = "player.verify", {"player_id": "testplayer"}
    elif kind == 1:
        event_type, data = "item.add", {"player_id": "testplayer",
                                        "items": [{"sku": "gems", "quantity": 1}]}
    else:
        # Repeats, as retries do: distinct payloads would fill the memory store, which
        # is bounded (100,000 records, 36 MiB: `cargo run --release --example
        # memory_store_cost`) but would hide a leak behind its growth in a short run.
        event_type, data = "order.paid", {"id": f"ord_{serial % 1000}"}
    # One reading of the clock per request: across a second boundary, separate readings
    # would sign a different timestamp than the header carries.
    now = int(time.time())
    body = json.dumps({
        "event_id": f"whevt_{serial}", "event_type": event_type, "event_time": now,
        "event_data": data, "idempotency_key": f"key_{serial % 1000}",
    }).encode()
    return request(body, now, signature(body, now))


def forged_request(serial: int) -> bytes:
    now = int(time.time())
    body = json.dumps({"event_id": f"whevt_{serial}", "event_type": "item.add",
                       "event_time": now, "event_data": {"player_id": "x", "items": []}}).encode()
    forgery = serial % 4
    if forgery == 0:   # tampered body
        return request(body + b" ", now, signature(body, now))
    if forgery == 1:   # wrong secret
        return request(body, now, signature(body, now, secret=SECRET + "x"))
    if forgery == 2:   # replay of an old delivery
        return request(body, now - 3600, signature(body, now - 3600))
    return request(body, None, None)  # unsigned


def request(body: bytes, timestamp, sig) -> bytes:
    headers = f"POST /webhook HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {len(body)}\r\n"
    if timestamp is not None:
        headers += f"x-aghanim-signature-timestamp: {timestamp}\r\nx-aghanim-signature: {sig}\r\n"
    return headers.encode() + b"\r\n" + body


async def read_response(reader) -> int:
    status = int((await reader.readline()).split(b" ")[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def connection(worker: int, deadline: float, counts: dict) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
    serial = worker * 1_000_000
    try:
        while time.time() < deadline:
            serial += 1
            valid = random.random() < 0.5
            writer.write(valid_request(serial) if valid else forged_request(serial))
            status = await read_response(reader)
            if status >= 500:
                counts["5xx"] += 1
            elif valid:
                counts["valid ok" if status < 300 else "valid rejected"] += 1
            else:
                counts["forged rejected" if status == 403 else "forged accepted"] += 1
    finally:
        writer.close()


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--connections", type=int, default=128)
    args = parser.parse_args()

    server = start(build_example("server"), PORT)
    counts = {"valid ok": 0, "valid rejected": 0, "forged rejected": 0, "forged accepted": 0, "5xx": 0}
    samples = []
    try:
        deadline = time.time() + args.seconds
        tasks = [asyncio.create_task(connection(i, deadline, counts)) for i in range(args.connections)]
        while not all(task.done() for task in tasks):
            samples.append(memory_mib(server.pid)["VmRSS"])
            await asyncio.sleep(1)
        for task in tasks:
            task.result()
    finally:
        stop(server)

    quarter = max(1, len(samples) // 4)
    first, last = statistics.median(samples[:quarter]), statistics.median(samples[-quarter:])
    total = sum(counts.values())
    print(f"{args.seconds} s, {args.connections} keep-alive connections, {total} requests "
          f"({total / args.seconds:.0f}/s)")
    for name, count in counts.items():
        print(f"  {name:16} {count}")
    print(f"  RSS MiB: first quarter median {first:.1f}, last quarter median {last:.1f}, "
          f"max {max(samples):.1f}")
    passed = (counts["valid rejected"] == counts["forged accepted"] == counts["5xx"] == 0
              and counts["valid ok"] > 0 and counts["forged rejected"] > 0 and last <= first * 1.1 + 1)
    print("PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
