"""Prints the demo's summary table from the manifests and metrics it left behind.

    python3 scripts/summary.py DATA_DIR RUNS_DIR
"""
import glob
import json
import os
import sys


def last(path, split):
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            rows = [json.loads(l) for l in f if l.strip()]
    rows = [r for r in rows if r.get("split") == split]
    return rows[-1] if rows else None


def fmt(x, spec=".3f"):
    return "-" if x is None else format(x, spec)


def main(data, runs):
    print("epoch  temperature  replaced/all  replaced/masked  aux top-1  sequences  folder")
    for m in sorted(glob.glob(os.path.join(data, "epoch-*", "manifest.json"))):
        e = json.load(open(m))
        r = e["report"]
        print(f"{e['epoch']:>5}  {e['temperature']:>11.4f}  {fmt(r.get('replaced_fraction_all')):>12}  "
              f"{fmt(r.get('replaced_fraction_masked')):>15}  {fmt(r.get('aux_top1_accuracy')):>9}  "
              f"{e['num_sequences']:>9}  {os.path.dirname(m)}")
    print()
    print("run                final loss  val loss  val RTD acc  all-original  seq/s  export")
    for d in sorted(glob.glob(os.path.join(runs, "*"))):
        metrics = os.path.join(d, "metrics.jsonl")
        t, v = last(metrics, "train"), last(metrics, "validation")
        if t is None:
            continue
        export = os.path.join(d, "export")
        print(f"{os.path.basename(d):<18} {fmt(t.get('loss')):>10}  {fmt(v and v.get('loss')):>8}  "
              f"{fmt(v and v.get('accuracy')):>11}  {fmt(v and v.get('baseline_accuracy')):>12}  "
              f"{fmt(t.get('seq_per_s'), '.0f'):>5}  {export if os.path.isdir(export) else '-'}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
