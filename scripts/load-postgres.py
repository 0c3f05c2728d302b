#!/usr/bin/env python3
"""The PostgreSQL path under load, against a receiver written by hand; on loopback,
bounded in time.

    python3 scripts/load-postgres.py [--rounds 3] [--duration 10] [--connections 64] [--pgbouncer]

A private PostgreSQL (fsync off, pg_stat_statements loaded), and two servers, each on a
database of its own made fresh for each run:
  ours         examples/server with DATABASE_URL: the signature layer, the idempotency
               layer on the transactional store, Dispatch crediting the inventory
  handwritten  examples/handwritten_postgres.rs: the signature layer, then one sqlx
               transaction per delivery that inserts a marker (ON CONFLICT DO NOTHING),
               credits the same inventory table and commits
both with sqlx's default pool (10 connections). Each is driven for --duration seconds
over --connections keep-alive connections with signed 1 KiB `item.add` deliveries, all
distinct ("unique"), then with one in ten a re-send of an earlier one ("10% dups"),
the servers alternating within each round; medians over the rounds. A last run at twice
the connections shows what more offered load does. With --pgbouncer, both servers reach
the database through the same private PgBouncer 1.18 in transaction mode (10 server
connections, `statement-cache-capacity=0` as sqlx advises behind such a pooler).

Reported per server and mix: 2xx per second, p50/p99 latency, the server's CPU per
delivery (user + system, /proc/<pid>/stat) and PostgreSQL's (all its processes),
statements per delivery (pg_stat_statements: each statement of a simple query counted
on its own, BEGIN, COMMIT, SET and ROLLBACK included), round trips per delivery counted
on the database side (the voluntary context switches of the database's backends: a
backend sleeps until its client's next message once per round trip; sqlx's pings of a
connection when the pool hands it out and when it comes back count too, the same for
both servers), and the busiest the pool was (sampled from pg_stat_activity). The load
generator is this Python process, on the same 2 cores.
"""
import argparse
import asyncio
import hashlib
import hmac
import json
import os
import random
import statistics
import sys
import tempfile
import time

from common import SECRET, PgBouncer, Postgres, build_example, start, stop

PORTS = {"ours": 8150, "handwritten": 8151}
TICKS = os.sysconf("SC_CLK_TCK")
PADDING = "x" * 760  # brings each delivery to about 1 KiB


def delivery(serial: int) -> bytes:
    now = int(time.time())
    body = json.dumps({
        "event_id": f"whevt_load_{serial}", "game_id": "gm_load", "event_type": "item.add",
        "event_time": now, "idempotency_key": f"ord_load_{serial}", "sandbox": False,
        "event_data": {"player_id": f"player_{serial % 500}", "reason": PADDING,
                       "items": [{"sku": "gems", "quantity": 1}]},
    }).encode()
    mac = hmac.new(SECRET.encode(), f"{now}.".encode() + body, hashlib.sha256).hexdigest()
    return (f"POST /webhook HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nx-aghanim-signature-timestamp: {now}\r\n"
            f"x-aghanim-signature: {mac}\r\n\r\n").encode() + body


async def read_reply(reader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    length = next((int(line.split(":", 1)[1]) for line in lines
                   if line.lower().startswith("content-length:")), 0)
    await reader.readexactly(length)
    return int(lines[0].split(" ")[1])


class Load:
    def __init__(self, duplicates: float):
        self.duplicates = duplicates
        self.next = 0
        self.done = []  # serials answered 2xx, for re-sends
        self.latencies = []
        self.statuses = {}

    def pick(self) -> int:
        if self.done and random.random() < self.duplicates:
            return random.choice(self.done)
        self.next += 1
        return self.next


async def connection(port: int, load: Load, deadline: float) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.time() < deadline:
            serial = load.pick()
            started = time.perf_counter()
            writer.write(delivery(serial))
            status = await read_reply(reader)
            load.latencies.append(time.perf_counter() - started)
            load.statuses[status] = load.statuses.get(status, 0) + 1
            if 200 <= status < 300:
                load.done.append(serial)
    except (OSError, asyncio.IncompleteReadError):
        load.statuses["connection lost"] = load.statuses.get("connection lost", 0) + 1
    finally:
        writer.close()


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def postgres_cpu_seconds() -> float:
    """User and system time of every process named `postgres` now alive: the server and
    its backends (the pool's connections live through the run)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as comm:
                if comm.read().strip() != "postgres":
                    continue
            total += cpu_seconds(int(entry))
        except OSError:
            continue
    return total


def backend_waits(postgres: Postgres, database: str) -> dict:
    """Voluntary context switches of each backend serving `database`, by pid. A backend
    answers its client and sleeps until the next message: one switch per round trip
    (a message sent together with the one before it, such as a queued ROLLBACK with
    sqlx's ping, adds none)."""
    pids = postgres.sql(f"SELECT pid FROM pg_stat_activity WHERE datname = '{database}'")
    waits = {}
    for pid in pids.split():
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("voluntary_ctxt_switches:"):
                        waits[pid] = int(line.split()[1])
        except OSError:
            continue
    return waits


def statements(postgres: Postgres, database: str) -> int:
    """How many statements `database` ran, each of a simple query with several counted
    on its own (pg_stat_statements, utility statements included)."""
    return int(postgres.sql(
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s "
        f"JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = '{database}'"))


async def sample_pool(postgres: Postgres, database: str, deadline: float, samples: list) -> None:
    while time.time() < deadline:
        busy = await asyncio.to_thread(
            postgres.sql, "SELECT count(*) FROM pg_stat_activity "
            f"WHERE datname = '{database}' AND state <> 'idle'")
        samples.append(int(busy))
        await asyncio.sleep(0.5)


async def run(name: str, binary, postgres: Postgres, bouncer, serial: int, duplicates: float,
              connections: int, duration: float) -> dict:
    database = f"{name}_{serial}"
    postgres.pg("createdb", "-h", postgres.dir, "-U", "postgres", database)
    url = (bouncer or postgres).url(database)
    server = start(binary, PORTS[name], env={"DATABASE_URL": url})
    try:
        await asyncio.sleep(0.5)
        before_statements = statements(postgres, database)
        before_waits = backend_waits(postgres, database)
        before_cpu = cpu_seconds(server.pid)
        before_database_cpu = postgres_cpu_seconds()
        load = Load(duplicates)
        deadline = time.time() + duration
        samples = []
        await asyncio.gather(sample_pool(postgres, database, deadline, samples),
                             *(connection(PORTS[name], load, deadline) for _ in range(connections)))
        after_waits = backend_waits(postgres, database)
        cpu = cpu_seconds(server.pid) - before_cpu
        database_cpu = postgres_cpu_seconds() - before_database_cpu
    finally:
        stop(server)
    answered = sum(count for status, count in load.statuses.items()
                   if isinstance(status, int) and 200 <= status < 300)
    ran = statements(postgres, database) - before_statements
    latencies = sorted(load.latencies)
    return {
        "per_second": answered / duration,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
        "cpu_us": 1e6 * cpu / max(answered, 1),
        "database_cpu_us": 1e6 * database_cpu / max(answered, 1),
        "statements": ran / max(answered, 1),
        "round_trips": sum(after - before_waits.get(pid, 0) for pid, after in after_waits.items())
        / max(answered, 1),
        "pool_busy_max": max(samples, default=0),
        "statuses": load.statuses,
    }


def report(title: str, results: dict) -> None:
    print(f"\n{title}")
    print("| server | 2xx/s | p50 | p99 | server CPU per delivery | PostgreSQL CPU per delivery | statements per delivery | round trips per delivery | pool busy (max) | answers |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        median = lambda key: statistics.median(run[key] for run in runs)
        statuses = {}
        for one in runs:
            for status, count in one["statuses"].items():
                statuses[status] = statuses.get(status, 0) + count
        print(f"| {name} | {median('per_second'):.0f} | {median('p50_ms'):.1f} ms | "
              f"{median('p99_ms'):.1f} ms | {median('cpu_us'):.0f} µs | "
              f"{median('database_cpu_us'):.0f} µs | "
              f"{median('statements'):.2f} | {median('round_trips'):.2f} | "
              f"{max(run['pool_busy_max'] for run in runs)} | "
              f"{statuses} |")
    ours, handwritten = results["ours"], results["handwritten"]
    ratio = statistics.median(a["per_second"] / b["per_second"] for a, b in zip(ours, handwritten))
    p99 = statistics.median(a["p99_ms"] / b["p99_ms"] for a, b in zip(ours, handwritten))
    print(f"ours / handwritten, median of the rounds: 2xx/s {ratio:.2f}x, p99 {p99:.2f}x")


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--pgbouncer", action="store_true",
                        help="both servers through PgBouncer in transaction mode")
    args = parser.parse_args()
    binaries = {"ours": build_example("server"), "handwritten": build_example("handwritten_postgres")}
    directory = tempfile.mkdtemp(prefix="aghanim-load-postgres-")
    os.chmod(directory, 0o755)
    postgres = Postgres(directory, "-c shared_preload_libraries=pg_stat_statements "
                                   "-c max_connections=400")
    postgres.sql("CREATE EXTENSION pg_stat_statements")
    bouncer = (PgBouncer(os.path.join(directory, "pgbouncer"), postgres, server_connections=10)
               if args.pgbouncer else None)
    serial = 0
    try:
        for title, duplicates, connections, rounds in (
                ("unique deliveries", 0.0, args.connections, args.rounds),
                ("10% duplicates", 0.1, args.connections, args.rounds),
                (f"unique deliveries at {2 * args.connections} connections", 0.0,
                 2 * args.connections, 1)):
            results = {"ours": [], "handwritten": []}
            for round_ in range(rounds):
                order = ["ours", "handwritten"] if round_ % 2 == 0 else ["handwritten", "ours"]
                for name in order:
                    serial += 1
                    results[name].append(await run(name, binaries[name], postgres, bouncer,
                                                   serial, duplicates, connections,
                                                   args.duration))
            report(f"{title}: {rounds} round(s) of {args.duration:.0f} s each", results)
    finally:
        if bouncer:
            bouncer.stop()
        postgres.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
