#!/usr/bin/env python3
"""Writes idempotency.json: the exact payload fingerprints and store keys the
idempotency layer persists, computed here from their documented form, for the Rust
tests to pin. Python standard library only.

    python3 tests/vectors/idempotency.py > tests/vectors/idempotency.json

**These bytes are the store format.** Two versions of the crate read each other's
records during a rolling deploy (Redis hashes under `aghanim:idem:v1:`, PostgreSQL
rows). A change to any of them is a breaking change of the store format: it bumps the
version in the Redis key prefix (`v1` -> `v2`) and the PostgreSQL table's documented
format, and says in CHANGELOG.md how a rolling deploy crosses it (old records are not
found by the new version: its duplicates run again unless the handler's own write is
keyed). Never regenerate this file to make a failing test pass.

## The fingerprint of `event_data`

SHA-256 of `value:` followed by the canonical form of the JSON value:

- `null` -> `n`, `true` -> `t`, `false` -> `f`;
- a string -> `"`, its decoded length in bytes as a u64 little-endian, its decoded
  bytes: UTF-8, escapes decoded (`\\uD83D\\uDE00` as one character; a lone surrogate
  escape as the three bytes UTF-8 would give its code point, WTF-8);
- a number -> `#0;` for any zero (`-0`, `0.0e5`), else `#`, `-` if negative, the
  significant digits (integer and fraction digits together, leading and trailing zeros
  dropped), `e`, the exponent that makes digits x 10^exponent the value as an i64
  little-endian, `;`; so `1`, `1.0` and `10e-1` are one number;
- an array -> `[`, its values in order, `]`;
- an object -> `{`, its members ordered by the bytes of their decoded names, each as the
  name (a string as above) then its value, `}`; of members with the same name only the
  last one read is kept.

## The store key of a delivery

The id is `idempotency_key`, else `event_id` (an empty one counts as absent); the scope
is `game_id` (empty when absent), `sandbox` or `live` (`sandbox: true` only), the
`event_type` as sent, and the id. The key is the lowercase hex SHA-256 of each of the
four as its UTF-8 length in bytes (u64 big-endian) then its bytes, followed, for types
deduplicated per payload (`Policy::DeduplicateAllowingChanges`: `order.*`,
`payment.*`, `subscription.*`, `fraud.reported`, `player.marketing_consent.updated`),
by the 32 raw bytes of the fingerprint. The memory store and the PostgreSQL table's
`key` column hold it as it is; Redis holds `aghanim:idem:v1:{<key>}`.
"""
import hashlib
import json
import struct
import sys


class Reader:
    """Reads one JSON value and writes its canonical form."""

    def __init__(self, text: str):
        self.data = text.encode("utf-8")
        self.at = 0

    def peek(self) -> int:
        while self.data[self.at] in b" \t\r\n":
            self.at += 1
        return self.data[self.at]

    def value(self) -> bytes:
        byte = self.peek()
        if byte == ord("{"):
            return self.object()
        if byte == ord("["):
            return self.array()
        if byte == ord('"'):
            return canonical_string(self.string())
        for word, tag in ((b"true", b"t"), (b"false", b"f"), (b"null", b"n")):
            if self.data.startswith(word, self.at):
                self.at += len(word)
                return tag
        return self.number()

    def array(self) -> bytes:
        self.at += 1
        out = b"["
        if self.peek() == ord("]"):
            self.at += 1
            return out + b"]"
        while True:
            out += self.value()
            byte = self.peek()
            self.at += 1
            if byte == ord("]"):
                return out + b"]"

    def object(self) -> bytes:
        self.at += 1
        members = {}
        if self.peek() == ord("}"):
            self.at += 1
        else:
            while True:
                self.peek()
                name = self.string()
                self.peek()
                self.at += 1  # the colon
                members[name] = self.value()  # a repeated name keeps the last value
                byte = self.peek()
                self.at += 1
                if byte == ord("}"):
                    break
        return b"{" + b"".join(canonical_string(name) + members[name]
                               for name in sorted(members)) + b"}"

    def string(self) -> bytes:
        self.at += 1
        out = bytearray()
        while True:
            byte = self.data[self.at]
            self.at += 1
            if byte == ord('"'):
                return bytes(out)
            if byte != ord("\\"):
                out.append(byte)
                continue
            escape = chr(self.data[self.at])
            self.at += 1
            if escape != "u":
                out += {'"': b'"', "\\": b"\\", "/": b"/", "b": b"\b", "f": b"\f",
                        "n": b"\n", "r": b"\r", "t": b"\t"}[escape]
                continue
            unit = int(self.data[self.at:self.at + 4], 16)
            self.at += 4
            code = unit
            if 0xD800 <= unit < 0xDC00 and self.data.startswith(b"\\u", self.at):
                low = int(self.data[self.at + 2:self.at + 6], 16)
                if 0xDC00 <= low < 0xE000:
                    code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                    self.at += 6
            out += chr(code).encode("utf-8", "surrogatepass")

    def number(self) -> bytes:
        start = self.at
        while self.at < len(self.data) and chr(self.data[self.at]) in "+-0123456789.eE":
            self.at += 1
        text = self.data[start:self.at].decode()
        negative = text.startswith("-")
        mantissa, _, exponent = text.lstrip("-").lower().partition("e")
        integer, _, fraction = mantissa.partition(".")
        digits = integer + fraction
        if digits.strip("0") == "":
            return b"#0;"
        significant = digits.lstrip("0").rstrip("0")
        trailing = len(digits) - len(digits.rstrip("0"))
        power = int(exponent or "0") + trailing - len(fraction)
        return (b"#" + (b"-" if negative else b"") + significant.encode() + b"e"
                + struct.pack("<q", power) + b";")


def canonical_string(decoded: bytes) -> bytes:
    return b'"' + struct.pack("<Q", len(decoded)) + decoded


def fingerprint(event_data: str) -> bytes:
    return hashlib.sha256(b"value:" + Reader(event_data).value()).digest()


PER_PAYLOAD = ("order.", "payment.", "subscription.")
PER_PAYLOAD_TYPES = ("fraud.reported", "player.marketing_consent.updated")


def store_key(envelope: dict, event_data: str) -> str:
    identifier = envelope.get("idempotency_key") or envelope.get("event_id")
    environment = "sandbox" if envelope.get("sandbox") is True else "live"
    event_type = envelope["event_type"]
    scope = hashlib.sha256()
    for part in (envelope.get("game_id") or "", environment, event_type, identifier):
        encoded = part.encode("utf-8")
        scope.update(struct.pack(">Q", len(encoded)) + encoded)
    if event_type.startswith(PER_PAYLOAD) or event_type in PER_PAYLOAD_TYPES:
        scope.update(fingerprint(event_data))
    return scope.hexdigest()


# (name, event_data as sent); the JSON text is kept as written, spelling included.
PAYLOADS = [
    ("empty object", "{}"),
    ("item.add", '{"player_id":"p1","items":[{"sku":"gems","quantity":5}]}'),
    ("member order and whitespace", '{ "items" : [ { "quantity" : 5 , "sku" : "gems" } ] ,\n\t"player_id" : "p1" }'),
    ("escapes", r'{"\u0073ku":"\u0041\u00e9\n\"\\\/\b\f\r\t"}'),
    ("raw non-ASCII", '{"name":"Игрок 🎮","note":"日本語 — ü"}'),
    ("surrogate pair", r'{"emoji":"\ud83d\ude00"}'),
    ("lone high surrogate", r'{"odd":"\ud800x"}'),
    ("lone low surrogate", r'{"odd":"\udc00"}'),
    ("high surrogate then a non-low escape", r'{"odd":"\ud800\u0041"}'),
    ("integers", '{"a":0,"b":-0,"c":1,"d":-1,"e":1000,"f":9007199254740993}'),
    ("decimals", '{"a":1.0,"b":0.5,"c":-0.050,"d":10.25,"e":0.0}'),
    ("exponents", '{"a":1e2,"b":1E+2,"c":10e-1,"d":0.1e1,"e":-2.5e-3,"f":0e10}'),
    ("huge and tiny", '{"a":1e308,"b":1e400,"c":5e-324,"d":1e-400,"e":123456789012345678901234567890}'),
    ("nested", '{"a":[[],[{}],[1,[2,[3]]]],"b":{"c":{"d":{"e":null}}},"f":[true,false,null]}'),
    ("repeated name keeps the last", '{"sku":"first","sku":"last"}'),
    ("top-level array", '[1,"two",{"three":3}]'),
    ("top-level string", '"just text"'),
]

# (name, envelope fields, event_data as sent)
DELIVERIES = [
    ("item.add live with idempotency_key",
     {"event_id": "whevt_1", "game_id": "gm_1", "event_type": "item.add", "sandbox": False,
      "idempotency_key": "ord_1"}, PAYLOADS[1][1]),
    ("item.add sandbox",
     {"event_id": "whevt_1", "game_id": "gm_1", "event_type": "item.add", "sandbox": True,
      "idempotency_key": "ord_1"}, PAYLOADS[1][1]),
    ("item.remove with the purchase's key",
     {"event_id": "whevt_2", "game_id": "gm_1", "event_type": "item.remove", "sandbox": False,
      "idempotency_key": "ord_1"}, PAYLOADS[1][1]),
    ("item.add without idempotency_key: the event id",
     {"event_id": "whevt_3", "game_id": "gm_1", "event_type": "item.add", "idempotency_key": None},
     PAYLOADS[1][1]),
    ("item.add with an empty idempotency_key: the event id",
     {"event_id": "whevt_3", "game_id": "gm_1", "event_type": "item.add", "idempotency_key": ""},
     PAYLOADS[1][1]),
    ("item.add without game_id",
     {"event_id": "whevt_4", "event_type": "item.add", "idempotency_key": "ord_4"}, PAYLOADS[1][1]),
    ("coupon.redeemed",
     {"event_id": "whevt_5", "game_id": "gm_1", "event_type": "coupon.redeemed",
      "idempotency_key": "cpn_5"}, '{"player_id":"p1","coupon_code":"SPRING"}'),
    ("order.paid: per payload",
     {"event_id": "whevt_6", "game_id": "gm_1", "event_type": "order.paid",
      "idempotency_key": "ord_6"}, '{"id":"ord_6","amount":499}'),
    ("order.paid: another payload under the same key",
     {"event_id": "whevt_7", "game_id": "gm_1", "event_type": "order.paid",
      "idempotency_key": "ord_6"}, '{"id":"ord_6","amount":599}'),
    ("order.paid: the first payload respelled",
     {"event_id": "whevt_8", "game_id": "gm_1", "event_type": "order.paid",
      "idempotency_key": "ord_6"}, '{ "amount" : 4.99e2, "id" : "ord\\u005f6" }'),
    ("payment.succeeded",
     {"event_id": "whevt_9", "game_id": "gm_1", "event_type": "payment.succeeded",
      "idempotency_key": "pay_9", "sandbox": True}, '{"payment_id":"pay_9"}'),
    ("subscription.renewed",
     {"event_id": "whevt_10", "game_id": "gm_1", "event_type": "subscription.renewed"},
     '{"subscription_id":"sub_10"}'),
    ("fraud.reported",
     {"event_id": "whevt_11", "game_id": "gm_1", "event_type": "fraud.reported"},
     '{"order_id":"ord_11"}'),
    ("player.marketing_consent.updated",
     {"event_id": "whevt_12", "game_id": "gm_1", "event_type": "player.marketing_consent.updated"},
     '{"player_id":"p1","consent":true}'),
    ("odd characters in ids",
     {"event_id": "whevt_13", "game_id": "gm:Ünï{c}ode", "event_type": "item.add",
      "idempotency_key": "ord:1:🎮 \"quoted\" {braces} \\back"}, PAYLOADS[1][1]),
    ("an id of 255 bytes",
     {"event_id": "whevt_14", "game_id": "gm_1", "event_type": "item.add",
      "idempotency_key": "k" * 255}, PAYLOADS[1][1]),
]


def body(envelope: dict, event_data: str) -> str:
    fields = [f"{json.dumps(name)}:{json.dumps(value, ensure_ascii=False)}"
              for name, value in envelope.items()]
    return "{" + ",".join(fields + [f'"event_data":{event_data}']) + "}"


def main() -> None:
    fingerprints = [{"name": name, "event_data": text, "fingerprint": fingerprint(text).hex()}
                    for name, text in PAYLOADS]
    keys = []
    for name, envelope, event_data in DELIVERIES:
        key = store_key(envelope, event_data)
        keys.append({"name": name, "body": body(envelope, event_data), "memory": key,
                     "redis": f"aghanim:idem:v1:{{{key}}}", "postgres": key})
    json.dump({"fingerprints": fingerprints, "store_keys": keys}, sys.stdout,
              ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
