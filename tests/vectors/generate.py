#!/usr/bin/env python3
"""Writes vectors.json: Aghanim webhook signatures made with the recipe of Aghanim's
Python template, for the Rust tests to verify. Python standard library only.

    python3 tests/vectors/generate.py > tests/vectors/vectors.json
"""
import hashlib
import hmac
import json
import sys

ONE_MIB = 1024 * 1024
PATTERN = '{"sku":"gem_pack","quantity":1},'

SAMPLE = (
    '{"event_id":"whevt_eSeXmERbUGh","game_id":"gm_exoqPsmvqRu","event_type":"player.verify",'
    '"event_time":1725548450,"event_data":{"player_id":"testplayer"},"idempotency_key":null,'
    '"request_id":null,"sandbox":false,"trigger":"hub.login","transaction_id":"whtx_eSeXmERbUGh",'
    '"context":null}'
)

BODIES = [
    ("docs sample player.verify", SAMPLE),
    ("empty", ""),
    ("unicode", '{"name":"Игрок 🎮","note":"日本語 — ünïcödé","emoji":"👾"}'),
    ("whitespace", '{\r\n\t"event_type" : "item.add" ,\n  "event_data": { }\n}\n  '),
    ("escapes", '{"message":"quote \\" backslash \\\\ newline \\n","raw":"\u0000"}'),
    ("one MiB", None),
]

SECRETS = [
    ("ascii", "whsec_7f3c9a1e5b"),
    ("unicode", "sécret-🔑"),
    ("longer than a block", "k" * 100),
    ("one byte", "x"),
]

TIMESTAMPS = [1725548450, 0, 1700000000, 9999999999]


def signature(secret, timestamp, body):
    # The template: hmac.new(secret.encode(), f"{ts}.{body}".encode(), hashlib.sha256)
    return hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()


def one_mib():
    return (PATTERN * (ONE_MIB // len(PATTERN) + 1))[:ONE_MIB]


def main():
    vectors = []
    for index, (body_name, body) in enumerate(BODIES):
        secret_name, secret = SECRETS[index % len(SECRETS)]
        for timestamp in TIMESTAMPS[: 1 + index % len(TIMESTAMPS)]:
            text = one_mib() if body is None else body
            vector = {
                "name": f"{body_name} body, {secret_name} secret, timestamp {timestamp}",
                "secret": secret,
                "timestamp": timestamp,
                "signature": signature(secret, timestamp, text),
            }
            if body is None:
                vector["body_repeat"] = {"pattern": PATTERN, "len": ONE_MIB}
            else:
                vector["body"] = body
            vectors.append(vector)
    for secret_name, secret in SECRETS:
        vectors.append({
            "name": f"docs sample body, {secret_name} secret",
            "secret": secret,
            "timestamp": 1725548450,
            "body": SAMPLE,
            "signature": signature(secret, 1725548450, SAMPLE),
        })
    json.dump(vectors, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
