#!/usr/bin/env python3
"""The example server's /metrics against what was sent to it.

    python3 scripts/metrics-check.py [--binary PATH] > metrics.txt

Starts the example server (the binary built by `cargo build --examples --all-features`,
in the target directory cargo reports, which honours CARGO_TARGET_DIR; or --binary), sends it a known mix over loopback (valid item.add deliveries, a duplicate
of each, forged and stale deliveries, a player.verify and an unknown event type), reads
`/metrics`, checks every count against what was sent, prints the metrics text on
standard output (for `promtool check metrics`) and the checks on standard error. Exits
non-zero when a count is off.
"""
import argparse
import json
import pathlib
import re
import socket
import sys
import time
import urllib.request

from common import SECRET, signature, start, stop, target_dir


def post(port: int, body: bytes, timestamp: int, secret: str = SECRET) -> int:
    head = (
        f"POST /webhook HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n"
        f"x-aghanim-signature-timestamp: {timestamp}\r\n"
        f"x-aghanim-signature: {signature(body, timestamp, secret)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(head + body)
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    return int(reply.split(b" ", 2)[1])


def event(event_type: str, key: str, data: dict) -> bytes:
    return json.dumps({"event_id": f"whevt_{key}", "game_id": "gm_metrics",
                       "event_type": event_type, "idempotency_key": key,
                       "event_data": data}).encode()


def value(metrics: str, name: str, **labels: str) -> float:
    """The sample of `name` whose labels include `labels`; 0 when there is none."""
    for line in metrics.splitlines():
        match = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(key) == wanted for key, wanted in labels.items()):
            return float(match.group(3))
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=str(target_dir() / "debug" / "examples" / "server"))
    parser.add_argument("--port", type=int, default=8140)
    args = parser.parse_args()
    server = start(pathlib.Path(args.binary), args.port)
    try:
        now = int(time.time())
        items = {"player_id": "testplayer", "items": [{"sku": "gems", "quantity": 1}]}
        purchases = 3
        statuses = []
        for serial in range(purchases):
            body = event("item.add", f"ord_metrics_{serial}", items)
            statuses.append(post(args.port, body, now))
            statuses.append(post(args.port, body, now))  # a duplicate: replayed
        statuses.append(post(args.port, event("item.add", "ord_forged", items), now, "guessed"))
        statuses.append(post(args.port, event("item.add", "ord_stale", items), now - 3600))
        statuses.append(post(args.port, event("player.verify", "verify", {"player_id": "testplayer"}), now))
        statuses.append(post(args.port, event("no.such.type", "unknown", {}), now))
        with urllib.request.urlopen(f"http://127.0.0.1:{args.port}/metrics", timeout=10) as reply:
            metrics = reply.read().decode()
    finally:
        stop(server)

    verified = 2 * purchases + 2
    checks = [
        ("answers", statuses, [200] * (2 * purchases) + [403, 403, 200, 400]),
        ("verified", value(metrics, "aghanim_webhook_deliveries_total", outcome="verified"), verified),
        ("forged", value(metrics, "aghanim_webhook_deliveries_total", outcome="signature_mismatch"), 1),
        ("stale", value(metrics, "aghanim_webhook_deliveries_total", outcome="timestamp_outside_tolerance"), 1),
        ("ages", value(metrics, "aghanim_webhook_delivery_age_seconds_count"), verified),
        ("item.add 2xx", value(metrics, "aghanim_webhook_events_total", event_type="item.add", **{"class": "2xx"}), purchases),
        ("player.verify 2xx", value(metrics, "aghanim_webhook_events_total", event_type="player.verify", **{"class": "2xx"}), 1),
        ("other 4xx", value(metrics, "aghanim_webhook_events_total", event_type="other", **{"class": "4xx"}), 1),
        # The unknown type is claimed too (deduplicated by its key), then released: no
        # handler took it.
        ("claimed", value(metrics, "aghanim_webhook_idempotency_decisions_total", decision="claimed"), purchases + 1),
        ("released", value(metrics, "aghanim_webhook_idempotency_decisions_total", decision="released"), 1),
        ("kept: stale", value(metrics, "aghanim_webhook_dead_letters_kept_total", reason="stale", event_type="item.add"), 1),
        ("kept: no handler", value(metrics, "aghanim_webhook_dead_letters_kept_total", reason="no_handler", event_type="other"), 1),
        ("recorded", value(metrics, "aghanim_webhook_idempotency_decisions_total", decision="recorded"), purchases),
        ("replayed", value(metrics, "aghanim_webhook_idempotency_decisions_total", decision="replayed"), purchases),
        ("bodies reading", value(metrics, "aghanim_webhook_bodies_reading"), 0),
    ]
    failed = 0
    for name, seen, expected in checks:
        ok = seen == expected
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {seen} (expected {expected})", file=sys.stderr)
    print(metrics, end="")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
