#!/usr/bin/env python3
"""Prints the peer table from criterion's estimates after `cargo bench` in this folder:
median time per case and the ratio of aghanim-webhook to each peer."""
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent / "target" / "criterion"


def median(group: str, function: str) -> float:
    path = ROOT / group / function / "new" / "estimates.json"
    return json.loads(path.read_text())["median"]["point_estimate"]


def show(value: float) -> str:
    return f"{value / 1000:.2f} µs" if value >= 1000 else f"{value:.0f} ns"


print("| case | aghanim-webhook | tower-github-webhook | ratio | plain collect |")
print("|---|---|---|---|---|")
for size in ["1KiB", "64KiB"]:
    for frames in ["1-frames", "16-frames"]:
        group = f"layer_{size}_{frames}"
        ours, peer = median(group, "aghanim-webhook"), median(group, "tower-github-webhook")
        print(f"| {size}, {frames.replace('-frames', '')} frame(s) | {show(ours)} | {show(peer)} | "
              f"{ours / peer:.2f} | {show(median(group, 'collect'))} |")
print()
print("| body | aghanim-webhook `Verifier::verify` | standardwebhooks | ratio | template recipe | ratio |")
print("|---|---|---|---|---|---|")
for size in ["256B", "1KiB", "64KiB"]:
    group = f"verify_{size}"
    ours = median(group, "aghanim-webhook")
    standard, template = median(group, "standardwebhooks"), median(group, "template-recipe")
    print(f"| {size} | {show(ours)} | {show(standard)} | {ours / standard:.2f} | "
          f"{show(template)} | {ours / template:.2f} |")
