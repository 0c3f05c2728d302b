#!/usr/bin/env python3
"""Exactly-once credit across instances: a private redis-server, three example-server
processes sharing it, and deliveries the way Aghanim's retries would send them.

    python3 scripts/exactly-once.py [--purchases 300] [--copies 3] [--seconds-limit 120]

Each of K distinct `item.add` deliveries (one gem each, for `testplayer`) is sent
--copies times at once to different instances, and every copy is retried on 503, on a
dropped connection or on a refused one until it gets a 2xx, as Aghanim retries until it
gets one. A third of the purchases are sent again as late retries after all have
completed. Midway, one instance is killed with SIGKILL (deliveries in flight on it are
lost mid-handler) and started again. At the end, `player.verify` on every instance must
show exactly K gems.

Prints the count of 2xx answers, replays among them, 503s and connection failures, and
PASS or FAIL. Everything stays on loopback and stops by itself (--seconds-limit).
"""
import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from common import build_example, signature, start, stop

PORTS = [8130, 8131, 8132]


def delivery(serial: int) -> bytes:
    now = int(time.time())
    body = json.dumps({
        "event_id": f"whevt_once_{serial}", "game_id": "gm_once", "event_type": "item.add",
        "event_time": now, "idempotency_key": f"ord_once_{serial}", "sandbox": True,
        "event_data": {"player_id": "testplayer", "reason": f"Order paid ord_once_{serial}",
                       "items": [{"sku": "gems", "quantity": 1}]},
    }).encode()
    return request(body, now)


def request(body: bytes, now: int) -> bytes:
    return (
        f"POST /webhook HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n"
        f"x-aghanim-signature-timestamp: {now}\r\nx-aghanim-signature: {signature(body, now)}\r\n\r\n"
    ).encode() + body


async def exchange(port: int, raw: bytes) -> tuple:
    """(status, replayed, body), or (None, False, b"") when the connection failed."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    except (OSError, asyncio.TimeoutError):
        return None, False, b""
    try:
        writer.write(raw)
        await writer.drain()
        reply = await asyncio.wait_for(reader.read(), 30)
    except (OSError, asyncio.TimeoutError):
        return None, False, b""
    finally:
        writer.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    if not head:
        return None, False, b""
    lines = head.decode(errors="replace").split("\r\n")
    status = int(lines[0].split(" ")[1])
    replayed = any(line.lower().startswith("idempotent-replayed:") for line in lines[1:])
    return status, replayed, body


async def deliver_until_2xx(serial: int, port_index: int, counts: dict, deadline: float) -> None:
    """One copy of one delivery, retried as Aghanim would until it gets a 2xx."""
    pause = 0.05
    while time.time() < deadline:
        status, replayed, _ = await exchange(PORTS[port_index % len(PORTS)], delivery(serial))
        if status is None:
            counts["connection failed"] += 1
        elif 200 <= status < 300:
            counts["2xx"] += 1
            counts["replayed"] += replayed
            return
        elif status == 503:
            counts["503"] += 1
        else:
            counts[f"unexpected {status}"] = counts.get(f"unexpected {status}", 0) + 1
        port_index += 1  # the next retry may land on another instance
        await asyncio.sleep(pause)
        pause = min(pause * 2, 1.0)
    counts["never 2xx"] += 1


async def gems(port: int) -> int:
    now = int(time.time())
    body = json.dumps({"event_type": "player.verify", "event_id": "whevt_check",
                       "event_data": {"player_id": "testplayer"}}).encode()
    status, _, reply = await exchange(port, request(body, now))
    assert status == 200, f"player.verify on {port}: {status} {reply!r}"
    balances = json.loads(reply)["balances"]
    return sum(balance["quantity"] for balance in balances if balance["sku"] == "gems")


def start_redis(directory: str) -> tuple:
    socket = os.path.join(directory, "redis.sock")
    server = subprocess.Popen(
        ["redis-server", "--port", "0", "--unixsocket", socket, "--unixsocketperm", "700",
         "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", directory],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        if os.path.exists(socket):
            break
        time.sleep(0.05)
    return server, f"redis+unix://{socket}"


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--purchases", type=int, default=300)
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--seconds-limit", type=float, default=120)
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        print("redis-server is not on PATH: apt-get install redis-server")
        return 2

    binary = build_example("server")
    directory = tempfile.mkdtemp(prefix="aghanim-exactly-once-")
    redis, url = start_redis(directory)
    servers = [start(binary, port, env={"REDIS_URL": url}) for port in PORTS]
    counts = {"2xx": 0, "replayed": 0, "503": 0, "connection failed": 0, "never 2xx": 0}
    deadline = time.time() + args.seconds_limit
    started = time.time()
    try:
        tasks = []
        for serial in range(args.purchases):
            for copy in range(args.copies):
                tasks.append(asyncio.create_task(
                    deliver_until_2xx(serial, serial + copy, counts, deadline)))
            if serial == args.purchases // 2:
                # Midway: kill one instance outright, then start it again.
                os.killpg(servers[1].pid, 9)
                servers[1].wait()
                servers[1] = start(binary, PORTS[1], env={"REDIS_URL": url})
            await asyncio.sleep(0.002)
        await asyncio.gather(*tasks)
        # Late retries of a third of the purchases, after everything completed.
        await asyncio.gather(*(deliver_until_2xx(serial, serial, counts, deadline)
                               for serial in range(0, args.purchases, 3)))
        seen = [await gems(port) for port in PORTS]
    finally:
        for server in servers:
            stop(server)
        redis.kill()
        redis.wait()
        shutil.rmtree(directory, ignore_errors=True)

    elapsed = time.time() - started
    sent = args.purchases * args.copies + len(range(0, args.purchases, 3))
    print(f"{args.purchases} purchases, {args.copies} concurrent copies each across "
          f"{len(PORTS)} instances, plus {len(range(0, args.purchases, 3))} late retries: "
          f"{sent} deliveries in {elapsed:.1f} s; one instance SIGKILLed and restarted midway")
    for name, count in counts.items():
        print(f"  {name:18} {count}")
    print(f"  gems per instance  {seen} (expected {args.purchases})")
    passed = all(count == args.purchases for count in seen) and counts["never 2xx"] == 0
    print("PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
