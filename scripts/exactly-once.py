#!/usr/bin/env python3
"""Exactly-once credit across instances: a private store, three example-server
processes sharing it, and deliveries the way Aghanim's retries would send them.

    python3 scripts/exactly-once.py [--store redis|postgres] [--pgbouncer] [--purchases 300] [--copies 3] [--seconds-limit 120]

Each of K distinct `item.add` deliveries (one gem each, for `testplayer`) is sent
--copies times at once to different instances, each copy written by another serializer
(keys reordered, indented, `—` escaped or not), and every copy is retried on 503, on a
dropped connection or on a refused one until it gets a 2xx, as Aghanim retries until it
gets one. One copy in five hangs up first, at a random point (mid-headers, mid-body, or
after the whole request, before the answer), and then retries. A third of the purchases
are sent again as late retries after all have completed.

With `--store redis` (a private redis-server): midway, one instance is killed with
SIGKILL (deliveries in flight on it are lost mid-handler) and started again. The
instances' logs (`LOG_LEVEL=debug`) must show one handler run per purchase, except that
a purchase whose run the SIGKILL cut may run once more (its lease, then the inventory's
marker).

With `--store postgres` (a private PostgreSQL, `DATABASE_URL`, each instance with
`RUN_TIMEOUT_SECONDS=3`): an instance is SIGKILLed and restarted at a quarter, a half and
three quarters of the purchases (the script waits until the new one answers, so that no
restart of PostgreSQL falls into its start), PostgreSQL itself is restarted with `pg_ctl restart -m
immediate` at 60 %, and at 40 % an instance is frozen with SIGSTOP for 15 s, then
resumed with SIGCONT: the deliveries it held must get a 2xx elsewhere while it is still
frozen (the server ends its transactions within the run timeout plus the store
timeout). Before the late retries, every record is aged past the retention and one
instance restarted, which purges the answers at start: the late retries must be
replayed, not credited again. Runs cut by any of these roll back, so handler runs are
not checked; the credits are, in the database as well.

With `--pgbouncer` as well, the instances reach PostgreSQL through a private PgBouncer
1.18 in transaction mode with 4 server connections (`statement-cache-capacity=0`, as
sqlx advises behind such a pooler); the rest is the same.

At the end, `player.verify` on every instance must show exactly K gems. For each
SIGKILL it reports how long the deliveries it held took to get a 2xx elsewhere.

Prints the count of 2xx answers, replays among them, 503s, hang-ups and connection
failures, and PASS or FAIL. Everything stays on loopback and stops by itself
(--seconds-limit).
"""
import argparse
import asyncio
import glob
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from common import PgBouncer, Postgres, build_example, signature, start, stop

CLAIMED = re.compile(r'claimed dedupe_key="[^"]*:item\.add:ord_once_(\d+)" attempt=(\d+)')

PORTS = [8130, 8131, 8132]


def delivery(serial: int, style: int = 0) -> bytes:
    """The delivery of purchase `serial`, written in one of several spellings of the same
    JSON value."""
    now = int(time.time())
    envelope = {
        "event_id": f"whevt_once_{serial}", "game_id": "gm_once", "event_type": "item.add",
        "event_time": now, "idempotency_key": f"ord_once_{serial}", "sandbox": True,
        "event_data": {"player_id": "testplayer", "reason": f"Order paid — ord_once_{serial}",
                       "items": [{"sku": "gems", "quantity": 1}]},
    }
    # The numbers stay integers: `1.0` is the same value, but `quantity` is typed as an
    # integer and the handler refuses it (400 validation_error, never recorded).
    if style % 3 == 1:
        body = json.dumps(envelope, sort_keys=True, indent=2)
    elif style % 3 == 2:
        body = json.dumps(dict(reversed(list(envelope.items()))), ensure_ascii=False,
                          separators=(",", ":"))
    else:
        body = json.dumps(envelope)
    return request(body.encode(), now)


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


async def hang_up(port: int, raw: bytes) -> None:
    """Sends part of `raw` (or all of it) and goes away without reading the answer."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    except (OSError, asyncio.TimeoutError):
        return
    try:
        writer.write(raw[:random.randint(1, len(raw))])
        await writer.drain()
        await asyncio.sleep(random.uniform(0, 0.05))
    except OSError:
        pass
    finally:
        writer.close()


class Run:
    """What the deliveries saw, and what each SIGKILLed instance held."""

    def __init__(self):
        self.counts = {"2xx": 0, "replayed": 0, "503": 0, "hung up": 0,
                       "connection failed": 0, "never 2xx": 0}
        self.in_flight = {port: set() for port in PORTS}
        # One entry per SIGKILL: when, the purchases in flight on it, and for each the
        # seconds until a 2xx elsewhere.
        self.kills = []
        # Purchases that got a 2xx: those in flight on a stopped instance are not held.
        self.done = set()

    def killed(self, port: int) -> None:
        self.kills.append((time.time(), set(self.in_flight[port]) - self.done, {}))

    def answered(self, serial: int) -> None:
        self.done.add(serial)
        for killed_at, held, recovered in self.kills:
            if serial in held and serial not in recovered:
                recovered[serial] = time.time() - killed_at


async def deliver_until_2xx(serial: int, port_index: int, run: Run, deadline: float) -> None:
    """One copy of one delivery, retried as Aghanim would until it gets a 2xx."""
    pause = 0.05
    counts = run.counts
    style = port_index
    while time.time() < deadline:
        port = PORTS[port_index % len(PORTS)]
        if random.random() < 0.2:
            await hang_up(port, delivery(serial, style))
            counts["hung up"] += 1
        else:
            run.in_flight[port].add(serial)
            try:
                status, replayed, _ = await exchange(port, delivery(serial, style))
            finally:
                run.in_flight[port].discard(serial)
            if status is None:
                counts["connection failed"] += 1
            elif 200 <= status < 300:
                counts["2xx"] += 1
                counts["replayed"] += replayed
                run.answered(serial)
                return
            elif status == 503:
                counts["503"] += 1
            else:
                counts[f"unexpected {status}"] = counts.get(f"unexpected {status}", 0) + 1
        port_index += 1  # the next retry may land on another instance
        style += 1  # and may be written by another serializer
        await asyncio.sleep(pause)
        pause = min(pause * 2, 1.0)
    counts["never 2xx"] += 1


async def verify(port: int) -> tuple:
    """(status, body) of a `player.verify` of the test player."""
    body = json.dumps({"event_type": "player.verify", "event_id": "whevt_check",
                       "event_data": {"player_id": "testplayer"}}).encode()
    status, _, reply = await exchange(port, request(body, int(time.time())))
    return status, reply


async def until_serving(port: int, deadline: float) -> None:
    """Waits until a relaunched instance answers: it accepts connections before its
    start (the store's migration among it) is done, and a PostgreSQL restart in the
    middle of that would stop it, as it stops any server that cannot reach its
    database at start."""
    while time.time() < deadline and (await verify(port))[0] != 200:
        await asyncio.sleep(0.05)


async def gems(port: int) -> int:
    status, reply = await verify(port)
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
    parser.add_argument("--store", choices=["redis", "postgres"], default="redis")
    parser.add_argument("--purchases", type=int, default=300)
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--pgbouncer", action="store_true",
                        help="with --store postgres: through PgBouncer in transaction mode")
    parser.add_argument("--seconds-limit", type=float, default=120)
    args = parser.parse_args()
    if args.store == "redis" and shutil.which("redis-server") is None:
        print("redis-server is not on PATH: apt-get install redis-server")
        return 2
    if args.store == "postgres" and not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        print("no PostgreSQL: apt-get install postgresql")
        return 2

    bouncer = None
    binary = build_example("server")
    directory = tempfile.mkdtemp(prefix="aghanim-exactly-once-")
    os.chmod(directory, 0o755)
    if args.store == "redis":
        redis, url = start_redis(directory)
        env = {"REDIS_URL": url}
        postgres = None
    else:
        postgres = Postgres(directory)
        url = postgres.url()
        if args.pgbouncer:
            bouncer = PgBouncer(os.path.join(directory, "pgbouncer"), postgres)
            url = bouncer.url()
        env = {"DATABASE_URL": url, "RUN_TIMEOUT_SECONDS": "3"}
        redis = None
    logs = []
    current_log = {}

    def launch(index: int) -> subprocess.Popen:
        log = os.path.join(directory, f"server-{index}-{len(logs)}.log")
        logs.append(log)
        current_log[index] = log
        return start(binary, PORTS[index], env=dict(env, LOG_LEVEL="debug"), stdout=log)

    servers = [launch(index) for index in range(len(PORTS))]
    run = Run()
    deadline = time.time() + args.seconds_limit
    started = time.time()
    if args.store == "redis":
        kills_at = {args.purchases // 2: 1}
    else:
        kills_at = {args.purchases // 4: 1, args.purchases // 2: 2, 3 * args.purchases // 4: 0}
    restart_postgres_at = 3 * args.purchases // 5 if postgres else None
    freeze_at = 2 * args.purchases // 5 if postgres else None
    frozen = []  # (index of the pause in run.kills, seconds frozen)
    killed_logs = set()
    database_gems = None
    answers_left = None

    async def freeze(index: int, seconds: float) -> None:
        run.killed(PORTS[index])
        frozen.append((len(run.kills) - 1, seconds))
        os.killpg(servers[index].pid, signal.SIGSTOP)
        await asyncio.sleep(seconds)
        os.killpg(servers[index].pid, signal.SIGCONT)
    try:
        tasks = []
        for serial in range(args.purchases):
            for copy in range(args.copies):
                tasks.append(asyncio.create_task(
                    deliver_until_2xx(serial, serial + copy, run, deadline)))
            if serial in kills_at:
                index = kills_at[serial]
                run.killed(PORTS[index])
                killed_logs.add(current_log[index])
                os.killpg(servers[index].pid, 9)
                servers[index].wait()
                servers[index] = launch(index)
                await until_serving(PORTS[index], deadline)
            if serial == restart_postgres_at:
                await asyncio.to_thread(postgres.restart_immediate)
            if serial == freeze_at:
                tasks.append(asyncio.create_task(freeze(0, 15.0)))
            await asyncio.sleep(0.002)
        await asyncio.gather(*tasks)
        if postgres:
            # Eight days later: a restarted instance purges the answers at start.
            await asyncio.to_thread(postgres.sql, "UPDATE aghanim_idempotency "
                                    "SET recorded_at = now() - interval '8 days'")
            stop(servers[1])
            servers[1] = launch(1)
            for _ in range(100):
                answers_left = int(await asyncio.to_thread(
                    postgres.sql, "SELECT count(body) FROM aghanim_idempotency"))
                if answers_left == 0:
                    break
                await asyncio.sleep(0.1)
        # Late retries of a third of the purchases, after everything completed.
        await asyncio.gather(*(deliver_until_2xx(serial, serial, run, deadline)
                               for serial in range(0, args.purchases, 3)))
        seen = [await gems(port) for port in PORTS]
        if postgres:
            database_gems = postgres.gems()
    finally:
        for server in servers:
            stop(server)
        if redis:
            redis.kill()
            redis.wait()
        if bouncer:
            bouncer.stop()
        if postgres:
            postgres.stop()
    claims = {}
    cut = set()
    for log in logs:
        with open(log, errors="replace") as lines:
            killed = log in killed_logs
            for line in lines:
                found = CLAIMED.search(line)
                if found:
                    serial = int(found.group(1))
                    claims[serial] = claims.get(serial, 0) + 1
                    if killed:
                        cut.add(serial)
    shutil.rmtree(directory, ignore_errors=True)

    elapsed = time.time() - started
    sent = args.purchases * args.copies + len(range(0, args.purchases, 3))
    disruptions = f"{len(run.kills) - len(frozen)} SIGKILL(s) of an instance"
    if postgres:
        disruptions += (", one immediate PostgreSQL restart, one instance frozen 15 s, "
                        "records aged 8 days and purged before the late retries")
    print(f"store {args.store}: {args.purchases} purchases, {args.copies} concurrent copies "
          f"each across {len(PORTS)} instances, written three ways, one copy in five hanging "
          f"up first, plus {len(range(0, args.purchases, 3))} late retries: {sent} deliveries "
          f"in {elapsed:.1f} s; {disruptions}")
    for name, count in run.counts.items():
        print(f"  {name:18} {count}")
    print(f"  gems per instance  {seen} (expected {args.purchases})")
    if postgres:
        print(f"  gems in the database  {database_gems}")
    never_ran = [serial for serial in range(args.purchases) if serial not in claims]
    twice = {serial: n for serial, n in claims.items() if n > 1}
    unexplained = {serial: n for serial, n in twice.items() if serial not in cut or n > 2}
    print(f"  handler runs       {sum(claims.values())} for {len(claims)} purchases; "
          f"run more than once: {len(twice)}; never run: {len(never_ran)}")
    pauses = {index: seconds for index, seconds in frozen}
    freed_while_frozen = True
    for number, (_, held, recovered) in enumerate(run.kills, 1):
        waits = sorted(recovered.values())
        summary = (f"2xx elsewhere after median {waits[len(waits) // 2]:.2f} s, max {waits[-1]:.2f} s"
                   if waits else "none needed a retry")
        what = "SIGSTOP" if number - 1 in pauses else "SIGKILL"
        print(f"  {what} {number}: {len(held)} deliveries in flight on it; {summary}")
        if number - 1 in pauses and (len(waits) < len(held) or (waits and waits[-1] >= pauses[number - 1])):
            freed_while_frozen = False
    if postgres:
        print(f"  answers left after the purge  {answers_left} (expected 0); "
              f"frozen instance's deliveries credited elsewhere while it was frozen: "
              f"{'yes' if freed_while_frozen else 'NO'}")
    passed = (all(count == args.purchases for count in seen)
              and run.counts["never 2xx"] == 0 and not never_ran
              and (database_gems is None or database_gems == args.purchases)
              and (postgres is None or (answers_left == 0 and freed_while_frozen))
              and (postgres is not None or not unexplained)
              and not any(name.startswith("unexpected") for name in run.counts))
    print("PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
