"""Table and figure of scripts/compare (the paper's comparisons downstream, small).

    python3 scripts/compare_table.py --finetune WORK/finetune --runs WORK/runs --data WORK/data \
        --times WORK/times --cost-fast WORK/cost-fast.txt --cost-electra WORK/cost-electra.txt \
        --random tiny --steps 1600 --batch-size 32 --out WORK/compare.md --figure WORK/compare.png

Writes (to OUT, and prints) the Markdown table of every method, ranked by its `mr` dev accuracy
(median, and mean +- std over the seeds, at its best grid point: results.json `best_per_model`),
with the
pre-training wall time and peak memory (summed and maxed over the timed calls in TIMES/NAME.tsv:
milliseconds and peak resident KiB per line; the CUDA peak of the run's metrics.jsonl where the
trainer recorded one) and the pre-training FLOPs (`trainer cost`'s training FLOPs per sequence x
batch x updates; the offline methods' corruption separately: the frozen auxiliary model's forward
per sequence x the sequences dumped). The figure (FIGURE) is the `mr` dev accuracy (median, bars
min-max) against pre-training updates for Fast-ELECTRA and the fixed auxiliary model, from their
checkpoints (results.json `points`), random initialisation at 0 updates.
"""
import argparse
import glob
import json
import os
import re

METHODS = [  # run folder name, table name
    ("fast-electra", "Fast-ELECTRA (offline, exp temperature schedule)"),
    ("fixed-aux", "fixed auxiliary model (constant T = 1)"),
    ("electra", "original ELECTRA (joint generator)"),
    ("mlm", "MLM alone (BERT-style)"),
]


def read_times(path):
    """(seconds, peak KiB or None) summed / maxed over the lines of a times file, or None."""
    if not os.path.isfile(path):
        return None
    ms, rss = 0, None
    for line in open(path):
        parts = line.split()
        if not parts:
            continue
        ms += int(parts[0])
        if len(parts) > 1 and parts[1].isdigit():
            rss = max(rss or 0, int(parts[1]))
    return ms / 1000.0, rss


def cuda_peak(run):
    """The highest peak_memory_bytes of the run's metrics lines (recorded on CUDA), or None."""
    path = os.path.join(run, "metrics.jsonl")
    if not os.path.isfile(path):
        return None
    peaks = []
    for line in open(path):
        if line.strip():
            v = json.loads(line).get("peak_memory_bytes")
            if v is not None:
                peaks.append(v)
    return max(peaks) if peaks else None


def parse_cost(path):
    """GFLOP per sequence from `trainer cost`: joint, dumped and the frozen aux forward."""
    text = open(path).read()
    joint = re.search(r"ELECTRA \(joint\) ([0-9.]+) GFLOP/seq", text)
    dumped = re.search(r"([0-9.]+) with dumped epochs", text)
    frozen = re.search(r"^aux, frozen \(fwd only\)\s+\S+\s+[0-9.]+\s+([0-9.]+)", text, re.M)
    get = lambda m: float(m.group(1)) if m else None  # noqa: E731
    return {"joint": get(joint), "dumped": get(dumped), "frozen": get(frozen)}


def sequences_dumped(folder):
    n = 0
    for p in sorted(glob.glob(os.path.join(folder, "epoch-*", "manifest.json"))):
        n += json.load(open(p)).get("num_sequences", 0)
    return n


def fmt_s(t):
    return "-" if t is None else f"{t:.1f}"


def fmt_mem(rss_kib, cuda):
    parts = []
    if cuda is not None:
        parts.append(f"{cuda / 2**20:.0f} MiB (CUDA)")
    if rss_kib is not None:
        parts.append(f"{rss_kib / 1024:.0f} MiB (RSS)")
    return ", ".join(parts) if parts else "not recorded"


def fmt_flops(gflop):
    return f"{gflop / 1e3:.3g} TFLOP" if gflop is not None else "-"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--finetune", required=True)
    ap.add_argument("--runs", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--times", required=True)
    ap.add_argument("--cost-fast", required=True)
    ap.add_argument("--cost-electra", required=True)
    ap.add_argument("--random", required=True, help="the label of the random initialisation")
    ap.add_argument("--methods", default=" ".join(n for n, _ in METHODS),
                    help="the run folders compared (space-separated; default all)")
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--batch-size", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--figure", required=True)
    a = ap.parse_args()

    results = json.load(open(os.path.join(a.finetune, "results.json")))
    best = {p["model"]: p for p in results["best_per_model"]}
    cost_fast = parse_cost(a.cost_fast)
    cost_electra = parse_cost(a.cost_electra)
    seqs = a.steps * a.batch_size
    aux = read_times(os.path.join(a.times, "aux-mlm.tsv"))

    chosen = [(n, t) for n, t in METHODS if n in a.methods.split()]
    rows = []
    for name, title in chosen:
        t = read_times(os.path.join(a.times, f"{name}.tsv"))
        seconds, rss = t if t else (None, None)
        pre, notes = None, ""
        if name in ("fast-electra", "fixed-aux"):
            p = read_times(os.path.join(a.times, f"preprocess-{name}.tsv"))
            pre = (p[0] if p else 0.0) + (aux[0] if aux else 0.0) if (p or aux) else None
            flops = cost_fast["dumped"] * seqs if cost_fast["dumped"] is not None else None
            n = sequences_dumped(os.path.join(a.data, name))
            if cost_fast["frozen"] is not None and n:
                notes = (f"+ corruption {fmt_flops(cost_fast['frozen'] * n)} (frozen aux "
                         f"forward x {n} sequences dumped) + the aux MLM's training (not in "
                         "`trainer cost`)")
        elif name == "electra":
            flops = cost_electra["joint"] * seqs if cost_electra["joint"] is not None else None
            notes = "generator and discriminator together"
        else:
            flops = None
            notes = "`trainer cost` cannot express MLM alone (no RTD head, vocabulary logits)"
        rows.append((name, title, best.get(name), seconds, pre, fmt_mem(rss, cuda_peak(
            os.path.join(a.runs, name))), fmt_flops(flops) if flops is not None else
            ("not expressible" if name == "mlm" else "-"), notes))
    rows.append((a.random, f"random initialisation ({a.random})", best.get(a.random), 0.0, None,
                 "-", "0", "no pre-training"))
    rows.sort(key=lambda r: (-(r[2]["median"] if r[2] else -1), -(r[2]["mean"] if r[2] else -1)))

    metric = results.get("metric", "accuracy")
    lines = [
        f"`mr` dev {metric} after fine-tuning ({results.get('seeds', '?')} seeds, best grid point "
        f"per model), {a.steps} pre-training updates of batch {a.batch_size} per method.",
        "",
        f"| rank | method | median | mean ± std | seeds | pre-training wall time (s) | "
        f"+ auxiliary MLM and corruption (s) | peak memory | pre-training FLOPs | notes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, (name, title, p, seconds, pre, mem, flops, notes) in enumerate(rows):
        med = f"{p['median']:.4f}" if p else "-"
        ms = f"{p['mean']:.4f} ± {p['std']:.4f}" if p else "-"
        n = len(p["scores"]) if p else 0
        lines.append(f"| {i + 1} | {title} | {med} | {ms} | {n} | {fmt_s(seconds)} | "
                     f"{fmt_s(pre)} | {mem} | {flops} | {notes} |")
    lines += ["", "Wall time and peak resident memory as /usr/bin/time measured the trainer calls "
              "of this script (a CPU RSS includes libtorch's own ~400 MiB); FLOPs are `trainer "
              "cost`'s training FLOPs per sequence x batch x updates."]
    with open(a.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    rand = best.get(a.random)
    for name, title in chosen:
        if name == "electra":  # no checkpoints fine-tuned (the script's choice)
            continue
        pts = [p for p in results["best_per_model"]
               if p["model"] == name or p["model"].startswith(name + "/")]
        pts = sorted((p for p in pts if p["pretrain_updates"] is not None),
                     key=lambda p: p["pretrain_updates"])
        if rand:
            pts = [dict(rand, pretrain_updates=0)] + pts
        if not pts:
            continue
        x = [p["pretrain_updates"] for p in pts]
        y = [p["median"] for p in pts]
        err = [[p["median"] - p["min"] for p in pts], [p["max"] - p["median"] for p in pts]]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=title)
    ax.set_xlabel("pre-training updates")
    ax.set_ylabel(f"mr dev {metric} (median, bars min-max)")
    ax.set_title("Downstream score against pre-training updates")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(a.figure, dpi=120)


if __name__ == "__main__":
    main()
