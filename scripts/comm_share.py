#!/usr/bin/env python3
"""The gradient all-reduce's share of an update, from runs made with `--comm-timing --log-every 1`.

    python3 scripts/comm_share.py [--skip N] RUN_DIR...

For each run folder (rank 0's metrics.jsonl) over its `train` lines after the first N (default
3, warm-up): the median update time (global batch / seq_per_s of a one-update interval), the
median tail (`allreduce.tail_ms`: from the last gradient produced to the completion of the last
all-reduce: the communication the backward pass did not hide), the median share (tail / update),
the buckets per update, how many bucket all-reduces completed before the last gradient, and the
median span over which the backward pass produced gradients (first launch to last gradient).
"""
import argparse
import json
import statistics
import sys
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--skip", type=int, default=3, help="train lines skipped first (warm-up)")
    p.add_argument("runs", nargs="+", type=Path)
    a = p.parse_args()
    print("| run | update (ms) | tail (ms) | all-reduce share | buckets | done before the last gradient | backward span (ms) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for run in a.runs:
        batch = json.loads((run / "run.json").read_text())["batch_size"]
        lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
        train = [l for l in lines if l.get("split") == "train"][a.skip:]
        if not train or any(l.get("allreduce") is None for l in train):
            print(f"{run}: no --comm-timing train lines after the first {a.skip}", file=sys.stderr)
            return 1
        update = [1000.0 * batch / l["seq_per_s"] for l in train]
        tail = [l["allreduce"]["tail_ms"] for l in train]
        share = [t / u for t, u in zip(tail, update)]
        buckets = sorted({len(l["allreduce"]["launch_ms"]) for l in train})
        done = sum(sum(1 for d in l["allreduce"]["done_ms"] if d < 0) for l in train)
        total = sum(len(l["allreduce"]["done_ms"]) for l in train)
        span = [l["allreduce"]["backward_span_ms"] for l in train]
        print(
            f"| {run.name} | {statistics.median(update):.0f} | {statistics.median(tail):.0f} "
            f"| {100 * statistics.median(share):.1f}% | {'-'.join(map(str, buckets))} "
            f"| {done} of {total} | {statistics.median(span):.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
