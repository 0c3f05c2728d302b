#!/usr/bin/env python3
"""End-to-end load comparison on loopback, bounded in time.

    python3 scripts/load-compare.py [--rounds 8] [--duration 10] [--connections 64]

Starts, each pinned to CPU 0 with taskset:
  bare      examples/load_target.rs: an axum route that reads the body, no verification
  verified  the same route behind AghanimSignatureLayer
  dispatch  the layer in front of Dispatch with a typed item.add handler
  example   examples/server: the layer, the idempotency layer (memory store), Dispatch
  python    Aghanim's Python template (FastAPI + uvicorn), when pip can install them
and drives each, pinned to CPU 1, with 1 KiB signed item.add bodies over 64 keep-alive
connections, two ways (the example server's memory idempotency store replays the repeated
item.add after its first delivery):
  closed loop  wrk as fast as the server answers: requests/s and latency
  open loop    oha at a fixed --rate for the Rust servers: server CPU per request at
               the same offered load, so that neither server's speed changes how the
               kernel batches its wake-ups
The Rust servers run interleaved in every round, so that drift of the machine reaches
them alike; the ratios reported are medians over the rounds, and what one server adds to
another is the median of the differences within each round. Server CPU time (user and
system, reported apart) comes from /proc/<pid>/stat.

Installs what it needs: wrk from Debian's packages (apt-get, as root), oha from
crates.io (cargo install), fastapi and uvicorn into target/load-venv from PyPI.
"""
import argparse
import hashlib
import hmac
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from common import target_dir

ROOT = pathlib.Path(__file__).resolve().parent.parent
SECRET = "load-compare-secret"
TICKS = os.sysconf("SC_CLK_TCK")


def sh(*args, **kwargs):
    return subprocess.run(args, check=True, **kwargs)


def ensure_wrk():
    if shutil.which("wrk"):
        return
    print("installing wrk from Debian's packages ...", flush=True)
    sh("apt-get", "update", "-qq")
    sh("apt-get", "install", "-y", "-qq", "wrk")


def ensure_oha():
    if shutil.which("oha"):
        return True
    print("installing oha from crates.io (a few minutes) ...", flush=True)
    try:
        sh("cargo", "install", "-q", "--locked", "oha")
        return True
    except subprocess.CalledProcessError:
        print("oha unavailable: skipping the fixed-rate runs", flush=True)
        return False


def ensure_python_template():
    """The venv's python, or None when fastapi/uvicorn cannot be installed."""
    venv = target_dir() / "load-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        try:
            sh(sys.executable, "-m", "venv", str(venv))
            sh(str(python), "-m", "pip", "install", "-q", "fastapi", "uvicorn")
        except subprocess.CalledProcessError:
            print("fastapi/uvicorn unavailable: skipping the Python template", flush=True)
            return None
    return python


def body_1kib():
    event = {
        "event_id": "whevt_load", "game_id": "gm_load", "event_type": "item.add",
        "event_time": int(time.time()),
        "event_data": {"player_id": "testplayer", "items": [{"sku": "gems_100", "quantity": 1,
                       "price": 199, "currency": "USD"}], "reason": ""},
        "idempotency_key": "ord_load", "request_id": None, "sandbox": False,
        "trigger": None, "transaction_id": "whtx_load", "context": None,
    }
    size = len(json.dumps(event, separators=(",", ":")))
    event["event_data"]["reason"] = "x" * (1024 - size)
    body = json.dumps(event, separators=(",", ":"))
    assert len(body) == 1024, len(body)
    return body


def wrk_script(directory):
    """A wrk script with a freshly signed body (the tolerance is 300 s; a round is not)."""
    body = body_1kib()
    timestamp = str(int(time.time()))
    signature = hmac.new(SECRET.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    path = pathlib.Path(directory) / "signed.lua"
    path.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = [==[{body}]==]\n"
        'wrk.headers["content-type"] = "application/json"\n'
        f'wrk.headers["x-aghanim-signature-timestamp"] = "{timestamp}"\n'
        f'wrk.headers["x-aghanim-signature"] = "{signature}"\n'
    )
    return path


def wait_for_port(port, process, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not start")


def cpu_seconds(pid):
    """User and system CPU time the process has used so far."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def cpu_per_request(before, after, requests):
    """Server CPU per request in µs: total, user and system."""
    user, system = ((b - a) / requests * 1e6 if requests else float("nan")
                    for a, b in zip(before, after))
    return {"cpu_us": user + system, "user_us": user, "sys_us": system}


def to_ms(text):
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_oha(port, rate, duration, connections, pid):
    """`rate` requests/s offered for `duration` seconds; CPU per request at that load."""
    body = body_1kib().encode()
    timestamp = int(time.time())
    signature = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    with tempfile.NamedTemporaryFile(suffix=".json") as file:
        file.write(body)
        file.flush()
        before = cpu_seconds(pid)
        out = subprocess.run(
            ["taskset", "-c", "1", "oha", "-z", f"{duration}s", "-c", str(connections),
             "-q", str(rate), "--no-tui", "--output-format", "json", "-m", "POST",
             "-H", "content-type: application/json",
             "-H", f"x-aghanim-signature-timestamp: {timestamp}",
             "-H", f"x-aghanim-signature: {signature}",
             "-D", file.name, f"http://127.0.0.1:{port}/webhook"],
            check=True, capture_output=True, text=True, timeout=duration + 30,
        ).stdout
        after = cpu_seconds(pid)
    report = json.loads(out)
    statuses = report["statusCodeDistribution"]
    requests = sum(statuses.values())
    return {
        "rps": report["summary"]["requestsPerSec"],
        "p50": report["latencyPercentiles"]["p50"] * 1000,
        "p99": report["latencyPercentiles"]["p99"] * 1000,
        **cpu_per_request(before, after, requests),
        "non_2xx": requests - statuses.get("200", 0),
        "requests": requests,
    }


def run_wrk(port, script, duration, connections, pid):
    before = cpu_seconds(pid)
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency",
         "-s", str(script), f"http://127.0.0.1:{port}/webhook"],
        check=True, capture_output=True, text=True, timeout=duration + 30,
    ).stdout
    after = cpu_seconds(pid)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": to_ms(re.search(r"\s50%\s+(\S+)", out).group(1)),
        "p99": to_ms(re.search(r"\s99%\s+(\S+)", out).group(1)),
        **cpu_per_request(before, after, requests),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "requests": requests,
    }


def report(name, load, result):
    print(f"{name:9} {load:>8} {result['rps']:9.0f} req/s  p50 {result['p50']:.2f} ms  "
          f"p99 {result['p99']:.2f} ms  cpu {result['cpu_us']:.2f} µs/req  "
          f"non-2xx {result['non_2xx']}", flush=True)


def table(title, results):
    print(f"\n{title}\n")
    print("| server | req/s | p50 ms | p99 ms | server CPU µs/req (user + system) | non-2xx |")
    print("|---|---|---|---|---|---|")
    for name, runs in results.items():
        if not runs:
            continue
        median = lambda key: statistics.median(run[key] for run in runs)
        print(f"| {name} | {median('rps'):.0f} | {median('p50'):.2f} | {median('p99'):.2f} | "
              f"{median('cpu_us'):.2f} ({median('user_us'):.2f} + {median('sys_us'):.2f}) | "
              f"{sum(run['non_2xx'] for run in runs)} |")


def paired(label, results):
    pairs = list(zip(results["bare"], results["verified"]))
    if not pairs:
        return
    cpu = [v["cpu_us"] / b["cpu_us"] for b, v in pairs]
    rps = [v["rps"] / b["rps"] for b, v in pairs]
    print(f"{label}: verified / bare, median of {len(pairs)} pairs (min-max): "
          f"CPU per request {statistics.median(cpu):.3f}x ({min(cpu):.3f}-{max(cpu):.3f}), "
          f"req/s {statistics.median(rps):.3f}x ({min(rps):.3f}-{max(rps):.3f})")


def difference(label, name, base, runs):
    """What `name` adds to `base` in server CPU per request, paired within each round
    (both measured minutes apart at most), so that drift between rounds cancels."""
    pairs = list(zip(runs.get(base, []), runs.get(name, [])))
    if not pairs:
        return
    parts = []
    for key, what in (("cpu_us", "total"), ("user_us", "user"), ("sys_us", "system")):
        deltas = [n[key] - b[key] for b, n in pairs]
        parts.append(f"{what} {statistics.median(deltas):+.2f} ({min(deltas):+.2f} to {max(deltas):+.2f})")
    print(f"{label}: {name} - {base}, server CPU per request, median of {len(pairs)} rounds "
          f"(min to max), µs: " + ", ".join(parts))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rate", type=int, default=20000, help="open-loop requests/s")
    parser.add_argument("--no-python", action="store_true")
    parser.add_argument("--closed-only", action="store_true", help="skip the oha runs")
    args = parser.parse_args()

    ensure_wrk()
    open_loop = not args.closed_only and ensure_oha()
    sh("cargo", "build", "-q", "--release", "--example", "load_target", "--example", "server", cwd=ROOT)
    python = None if args.no_python else ensure_python_template()
    examples = target_dir() / "release" / "examples"
    env = dict(os.environ, AGHANIM_WEBHOOK_SECRET=SECRET)
    servers = {
        "bare": (8100, [str(examples / "load_target"), "bare"]),
        "verified": (8101, [str(examples / "load_target"), "verified"]),
        "dispatch": (8104, [str(examples / "load_target"), "dispatch"]),
        "example": (8102, [str(examples / "server")]),
    }
    if python:
        servers["python"] = (8103, [str(python), "-m", "uvicorn", "aghanim_template:app",
                                    "--port", "8103", "--log-level", "warning", "--no-access-log"])
    processes = {}
    try:
        for name, (port, command) in servers.items():
            processes[name] = subprocess.Popen(
                ["taskset", "-c", "0", *command], env=dict(env, PORT=str(port)),
                cwd=ROOT / "scripts" / "load", stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True,
            )
        for name, (port, _) in servers.items():
            wait_for_port(port, processes[name])

        results = {name: [] for name in servers}
        fixed = {name: [] for name in ("bare", "verified", "dispatch", "example")}
        with tempfile.TemporaryDirectory() as directory:
            def measure(name):
                port = servers[name][0]
                result = run_wrk(port, wrk_script(directory), args.duration, args.connections,
                                 processes[name].pid)
                results[name].append(result)
                report(name, "max", result)

            def measure_fixed(name):
                result = run_oha(servers[name][0], args.rate, args.duration, args.connections,
                                 processes[name].pid)
                fixed[name].append(result)
                report(name, f"{args.rate}/s", result)

            for name in servers:  # warm-up, not recorded
                run_wrk(servers[name][0], wrk_script(directory), 2, args.connections,
                        processes[name].pid)
            rust = [name for name in servers if name != "python"]
            for _ in range(args.rounds):
                for name in rust:
                    measure(name)
                if open_loop:
                    for name in fixed:
                        measure_fixed(name)
            if "python" in servers:
                for _ in range(max(2, args.rounds // 4)):
                    measure("python")
    finally:
        for process in processes.values():
            os.killpg(process.pid, signal.SIGTERM)

    print(f"\n{args.rounds} interleaved rounds of {args.duration} s, {args.connections} connections, "
          "1 KiB signed item.add; server on CPU 0, load generator on CPU 1")
    table("Closed loop (wrk, as fast as the server answers):", results)
    table(f"Open loop (oha, {args.rate} requests/s offered):", fixed)
    print()
    paired("closed loop", results)
    paired(f"open loop at {args.rate}/s", fixed)
    for label, runs in (("closed loop", results), (f"open loop at {args.rate}/s", fixed)):
        for name, base in (("verified", "bare"), ("dispatch", "verified"), ("example", "verified")):
            difference(label, name, base, runs)
    if results.get("python"):
        python_rps = statistics.median(run["rps"] for run in results["python"])
        for name in ("verified", "example"):
            ours = statistics.median(run["rps"] for run in results[name])
            print(f"{name} / Python template req/s: {ours / python_rps:.1f}x")


if __name__ == "__main__":
    main()
