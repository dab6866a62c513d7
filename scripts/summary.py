"""Prints the demo's summary table from the manifests and metrics it left behind.

    python3 scripts/summary.py DATA_DIR RUNS_DIR

Per epoch folder (DATA_DIR/epoch-* and DATA_DIR/validation/epoch-*): temperature, replaced
fraction (of all tokens and of the masked ones), the auxiliary model's top-1 accuracy at masked
positions, mean entropy of the tempered distribution, sequences and preprocess throughput.
Per run (RUNS_DIR/*/metrics.jsonl): objective, updates, final training loss, last validation loss,
ROC AUC and F1 of "replaced" (RTD; accuracy alone hides learning under class imbalance: most
tokens are original) and accuracy with the all-"original" baseline, median sequences/s, and the
plots and export it left. Standard library only.
"""
import glob
import json
import os
import statistics
import sys


def read_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def fmt(x, spec=".3f"):
    return "-" if x is None else format(x, spec)


def epochs_table(data):
    folders = sorted(glob.glob(os.path.join(data, "epoch-*", "manifest.json")))
    folders += sorted(glob.glob(os.path.join(data, "validation", "epoch-*", "manifest.json")))
    print("epoch  split       temperature  replaced/all  replaced/masked  aux top-1  entropy  "
          "sequences  preprocess seq/s")
    for path in folders:
        with open(path) as f:
            m = json.load(f)
        r = m["report"]
        print(f"{m['epoch']:>5}  {m.get('split') or '-':<10}  {m['temperature']:>11.4f}  "
              f"{fmt(r.get('replaced_fraction_of_tokens')):>12}  "
              f"{fmt(r.get('replaced_fraction_of_masked')):>15}  "
              f"{fmt(r.get('aux_top1_accuracy')):>9}  {fmt(r.get('mean_entropy'), '.2f'):>7}  "
              f"{m['num_sequences']:>9}  {fmt(r.get('sequences_per_second'), '.0f'):>16}")


def runs_table(runs):
    print("run                objective  steps  final loss  val loss  val AUC  val F1  val acc  "
          "all-original  seq/s  left behind")
    for d in sorted(glob.glob(os.path.join(runs, "*"))):
        metrics = os.path.join(d, "metrics.jsonl")
        if not os.path.exists(metrics):
            continue
        lines = read_lines(metrics)
        train = [x for x in lines if x.get("split") == "train"]
        val = [x for x in lines if x.get("split") == "validation"]
        if not train:
            continue
        objective = "-"
        run_json = os.path.join(d, "run.json")
        if os.path.exists(run_json):
            with open(run_json) as f:
                objective = json.load(f).get("objective", "-")
        t, v = train[-1], (val[-1] if val else {})
        # The first interval includes start-up (compilation, first loads): leave it out.
        speeds = [x["seq_per_s"] for x in train[1:] or train if x.get("seq_per_s")]
        speed = statistics.median(speeds) if speeds else None
        left = [f for f in ("loss.png", "accuracy.png", "export")
                if os.path.exists(os.path.join(d, f))]
        print(f"{os.path.basename(d):<18} {objective:<9}  {t['step']:>5}  {fmt(t.get('loss')):>10}  "
              f"{fmt(v.get('loss')):>8}  {fmt(v.get('auc')):>7}  {fmt(v.get('f1')):>6}  "
              f"{fmt(v.get('accuracy')):>7}  "
              f"{fmt(v.get('baseline_accuracy')):>12}  {fmt(speed, '.0f'):>5}  {', '.join(left)}")


def main(data, runs):
    epochs_table(data)
    print()
    runs_table(runs)
    print(f"\nplots and exports: {os.path.join(runs, '*')}/{{loss.png,accuracy.png,export/}}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
