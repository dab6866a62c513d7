"""Figures and table of scripts/ablation (the paper's Table 6 and Figures 3 and 5, small).

    python3 scripts/ablation_plots.py --data WORK/data --runs WORK/runs --aux AUX_EXPORT \
        --figures docs [--finetune WORK/finetune] --methods temperature uniform ...

Writes FIGURES/ablation-loss.png (the training-loss curve of every method's discriminator run),
FIGURES/ablation-distributions.png (each method's distribution at one masked position of the
validation split, token ids sorted by term frequency, as in the paper's Figure 3) and prints the
Markdown table (replaced fraction, validation RTD accuracy against the all-"original" baseline,
final training loss and, with --finetune, the `mr` dev accuracy of each method's discriminator
after `trainer finetune`: median and mean +- std over the seeds at its best grid point, from that
folder's results.json `best_per_model`; the methods ranked by it). The model-free distributions
are drawn from their closed forms
(data-spec/epoch.md, "Distributions") with the last epoch's gamma and alpha; the auxiliary ones
from the auxiliary model run by transformers on the same masked sequence.
"""
import argparse
import glob
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402


def read_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def last_epoch(folder):
    paths = sorted(glob.glob(os.path.join(folder, "epoch-*", "manifest.json")))
    return os.path.dirname(paths[-1]), [json.load(open(p)) for p in paths]


def model_free(name, m, counts, special, original):
    v = len(counts)
    ok = np.ones(v, bool)
    ok[list(special)] = False
    n = ok.sum()
    alpha = m.get("alpha") or 0.35
    gamma = {"uniform": 1.0, "term-frequency": 1.0, "smoothed-one-hot": 0.0}.get(name, m.get("gamma"))
    a = np.where(ok, counts.astype(float) if name in ("term-frequency", "tf-soh") else 1.0, 0.0)
    with np.errstate(divide="ignore"):
        w = np.where(ok, np.power(a, gamma), 0.0)
    if name in ("smoothed-one-hot", "unf-soh", "tf-soh"):
        w[original] *= ((1 - alpha) * (n - 1) / alpha) ** (1 - gamma)
    return w / w.sum()


def aux_distribution(name, m, aux_dir, ids, masked, position, counts, special, unk):
    import torch
    from transformers import AutoConfig, AutoModelForMaskedLM

    gamma = m.get("gamma") or 0.0
    config = AutoConfig.from_pretrained(aux_dir)
    if name == "dropout":
        config.hidden_dropout_prob, config.attention_probs_dropout_prob = gamma, 0.0
    elif name == "drop-attention":
        config.hidden_dropout_prob, config.attention_probs_dropout_prob = 0.0, gamma
    model = AutoModelForMaskedLM.from_pretrained(aux_dir, config=config)
    model.train(name in ("dropout", "drop-attention"))
    x = list(ids)
    for p in masked:
        x[p] = special["mask"]
    if name == "drop-token":
        rng = np.random.default_rng(0)
        for p, t in enumerate(ids):
            if p not in masked and t not in special.values() and rng.random() < gamma:
                x[p] = unk
    torch.manual_seed(0)
    with torch.no_grad():
        z = model(torch.tensor([x])).logits[0, position].double()
    if name == "temperature":
        z = z / m["temperature"]
    if name == "tf-interp" and gamma > 0:
        log_c = torch.tensor(np.log(np.where(counts > 0, counts, 1.0)))
        bad = torch.tensor(counts == 0)
        bad[list(special.values())] = True
        z = ((1 - gamma) * z + gamma * log_c).masked_fill(bad, float("-inf"))
    return torch.softmax(z, -1).numpy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--runs", required=True)
    ap.add_argument("--aux", required=True)
    ap.add_argument("--figures", required=True)
    ap.add_argument("--methods", nargs="+", required=True)
    ap.add_argument("--finetune", help="trainer finetune's --out folder of the methods' runs")
    a = ap.parse_args()

    # 1. Training-loss curves.
    fig, ax = plt.subplots(figsize=(8, 4.5))
    rows = []
    for name in a.methods:
        lines = read_lines(os.path.join(a.runs, name, "metrics.jsonl"))
        train = [x for x in lines if x.get("split") == "train"]
        val = [x for x in lines if x.get("split") == "validation"]
        _, manifests = last_epoch(os.path.join(a.data, name))
        aux = manifests[-1].get("distribution", "aux") == "aux"
        ax.plot([x["step"] for x in train], [x["loss"] for x in train], label=name,
                linestyle="-" if aux else "--", marker="." if len(train) < 5 else None)
        replaced = [m["report"]["replaced_fraction_of_masked"] for m in manifests]
        v = val[-1] if val else {}
        rows.append((name, manifests[-1], replaced, v, train[-1]["loss"] if train else None))
    ax.set_xlabel("update")
    ax.set_ylabel("training RTD loss")
    ax.set_yscale("log")
    ax.set_title("Tiny discriminator, same budget per replaced-token distribution")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(os.path.join(a.figures, "ablation-loss.png"), dpi=120)

    # 2. Distributions at one masked position, ids sorted by term frequency.
    tokens = os.path.join(a.data, "tokens")
    tm = json.load(open(os.path.join(tokens, "manifest.json")))
    counts = pq.read_table(os.path.join(tokens, tm["term_frequency"]["file"]))
    counts = np.array(counts.column("count").to_pylist(), dtype=np.int64)
    st = tm["tokenizer"]["special_tokens"]
    special = {k: st[k] for k in ("cls", "sep", "pad", "mask")}
    order = np.argsort(-counts, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    first = rows[0][0]
    vdir, _ = last_epoch(os.path.join(a.data, first, "validation"))
    row = pq.read_table(os.path.join(vdir, "part-00000.parquet")).slice(0, 1).to_pylist()[0]
    masked = row["masked_positions"]
    ids = list(row["input_ids"])
    for p, o in zip(masked, row["original_ids"]):
        ids[p] = o
    position, original = masked[0], row["original_ids"][0]
    cols = 5
    fig, axes = plt.subplots((len(rows) + cols - 1) // cols, cols, figsize=(3.2 * cols, 5.6),
                             sharex=True, squeeze=False)
    for ax, (name, m, _, _, _) in zip(axes.flat, rows):
        if m.get("distribution", "aux") == "aux":
            p = aux_distribution(m.get("augmentation") or "temperature", m, a.aux, ids, masked,
                                 position, counts, special, st["unk"])
        else:
            p = model_free(name, m, counts, special.values(), original)
        shown = np.where(p[order] > 0, p[order], np.nan)  # probability 0: not drawn (log scale)
        ax.plot(np.arange(len(p)), shown, lw=0.6)
        ax.scatter([rank[original]], [p[original]], color="red", s=12, zorder=3)
        ax.set_yscale("log")
        ax.set_ylim(1e-9, 1.5)
        g = m.get("gamma")
        ax.set_title(name + (f" (gamma {g:.2f})" if g is not None else ""), fontsize=9)
    for ax in axes.flat[len(rows):]:
        ax.axis("off")
    fig.supxlabel("token ids sorted by term frequency (rank)")
    fig.supylabel("probability at one masked position (red: the original)")
    fig.tight_layout()
    fig.savefig(os.path.join(a.figures, "ablation-distributions.png"), dpi=110)

    # 3. Table, ranked by the downstream score where there is one (the run folder's name is the
    # model's label in trainer finetune's results).
    best = {}
    if a.finetune:
        results = json.load(open(os.path.join(a.finetune, "results.json")))
        best = {p["model"]: p for p in results["best_per_model"]}
        rows.sort(key=lambda r: (-best[r[0]]["median"], -best[r[0]]["mean"]) if r[0] in best
                  else (float("inf"), 0))
    ft = " | mr dev accuracy: median | mean ± std" if a.finetune else ""
    print("| method | replaced fraction of masked, per epoch | validation RTD accuracy | "
          f"all-original | final training loss{ft} |")
    print("|---|---|---|---|---|" + ("---|---|" if a.finetune else ""))
    for name, m, replaced, v, loss in rows:
        acc = v.get("accuracy")
        base = v.get("baseline_accuracy")
        cols = ""
        if a.finetune:
            p = best.get(name)
            cols = (f" | {p['median']:.4f} | {p['mean']:.4f} ± {p['std']:.4f}" if p
                    else " | - | -")
        print(f"| {name} | {' / '.join(f'{r:.3f}' for r in replaced)} | "
              f"{'-' if acc is None else f'{acc:.4f}'} | {'-' if base is None else f'{base:.4f}'} | "
              f"{'-' if loss is None else f'{loss:.4f}'}{cols} |")


if __name__ == "__main__":
    main()
