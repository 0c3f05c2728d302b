#!/usr/bin/env python3
"""Prints the criterion results of `cargo bench` as ratios against their floors.

    cargo bench --bench verify --bench layer --bench dispatch && python3 scripts/bench-ratios.py

verify/<size>:  verifier / floor, where the floor is one HMAC-SHA256 pass from a keyed
                state prepared once plus the constant-time compare.
layer/<size>/<n>-frames: layer - collect, the time the layer adds to reading the body,
                and that minus the HMAC floor of the same size (the layer's own work).
dispatch/<body>: (layer + Dispatch) - layer, what dispatch costs, against serde_json
                parsing the same event into its typed form.
Times are criterion's median estimates.
"""
import json
import pathlib
import sys

from common import target_dir

ROOT = target_dir() / "criterion"


def median_ns(group, function):
    path = ROOT / group / function / "new" / "estimates.json"
    with open(path) as f:
        return json.load(f)["median"]["point_estimate"]


def fmt(ns):
    return f"{ns / 1000:.3f} µs" if ns >= 1000 else f"{ns:.0f} ns"


def main():
    if not ROOT.exists():
        sys.exit("no criterion results: run `cargo bench --bench verify --bench layer` first")
    floors = {}
    print("| body | floor (HMAC + compare) | verifier | ratio |")
    print("|---|---|---|---|")
    for size in ["256B", "1KiB", "4KiB", "64KiB", "1MiB"]:
        group = f"verify_{size}"
        try:
            floor, ours = median_ns(group, "floor"), median_ns(group, "verifier")
        except FileNotFoundError:
            continue
        floors[size] = floor
        print(f"| {size} | {fmt(floor)} | {fmt(ours)} | {ours / floor:.3f}x |")
    print()
    print("| body | frames | collect | layer | layer - collect | minus HMAC floor |")
    print("|---|---|---|---|---|---|")
    for size in ["1KiB", "64KiB"]:
        for frames in [1, 16]:
            group = f"layer_{size}_{frames}-frames"
            try:
                collect, layer = median_ns(group, "collect"), median_ns(group, "layer")
            except FileNotFoundError:
                continue
            added = layer - collect
            own = f"{fmt(added - floors[size])}" if size in floors else "?"
            print(f"| {size} | {frames} | {fmt(collect)} | {fmt(layer)} | {fmt(added)} | {own} |")
    dispatch_groups = sorted(path.name for path in ROOT.glob("dispatch_*"))
    if dispatch_groups:
        print()
        print("| event | serde_json::from_slice::<Event<ItemChange>> | layer + Dispatch - layer | ratio |")
        print("|---|---|---|---|")
        for group in dispatch_groups:
            serde = median_ns(group, "serde_json")
            dispatch = median_ns(group, "layer+dispatch") - median_ns(group, "layer")
            size = group.removeprefix("dispatch_")
            print(f"| {size} item.add | {fmt(serde)} | {fmt(dispatch)} | {dispatch / serde:.2f}x |")


if __name__ == "__main__":
    main()
