"""`trainer finetune` against transformers on the CPU: training examples per second on the same
examples, model, batch and length, in one call, alternating, median of the repeats.

    python3 scripts/bench/finetune_speed.py --tokenizer TOKENIZER.json --train TRAIN.jsonl \
        [--model small] [--max-seq-len 64] [--batch-size 32] [--examples 512] [--repeats 3]

TRAIN.jsonl holds `text` and `label` (0/1) per line (the first --examples are used). Ours:
`trainer finetune --model M --init random` (fp32, one epoch, one seed), its
`train_examples_per_s` from results.json (evaluation excluded). The reference:
scripts/bench/reference_finetune.py on the same model's config (OUT/best/config.json), same
examples, order of operations and optimizer. Prints one line per repeat and the medians with
their ratio. Needs `cargo build --release --bins`.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--train", required=True)
    p.add_argument("--model", default="small")
    p.add_argument("--max-seq-len", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--examples", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    trainer = (target if target.is_absolute() else REPO / target) / "release" / "trainer"
    env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "passive"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = [line for line in open(a.train, encoding="utf-8") if line.strip()][: a.examples]
        train = tmp / "train.jsonl"
        train.write_text("".join(rows), encoding="utf-8")
        ours, theirs = [], []
        for k in range(a.repeats):
            out = tmp / f"ours-{k}"
            subprocess.run(
                [str(trainer), "finetune", "--task", "speed", "--train", str(train), "--dev",
                 str(train), "--text-fields", "text", "--label-field", "label", "--model", a.model,
                 "--init", "random", "--tokenizer", a.tokenizer, "--max-seq-len",
                 str(a.max_seq_len), "--batch-size", str(a.batch_size), "--epochs", "1",
                 "--seeds", "1", "--lr", "1e-4", "--optimizer", "adamw", "--device", "cpu",
                 "--no-tensorboard", "--out", str(out)],
                check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            run = json.loads((out / "results.json").read_text())["runs"][0]
            ours.append(run["train_examples_per_s"])
            ref = subprocess.run(
                [sys.executable, str(REPO / "scripts/bench/reference_finetune.py"), "--config",
                 str(out / "best" / "config.json"), "--tokenizer", a.tokenizer, "--train",
                 str(train), "--max-seq-len", str(a.max_seq_len), "--batch-size",
                 str(a.batch_size)],
                check=True, env=env, capture_output=True, text=True)
            theirs.append(json.loads(ref.stdout.strip().splitlines()[-1])["train_examples_per_s"])
            print(f"repeat {k + 1}: ours {ours[-1]:.1f} examples/s, transformers {theirs[-1]:.1f}",
                  flush=True)
        mo, mt = statistics.median(ours), statistics.median(theirs)
        print(f"model {a.model}, {len(rows)} examples, length {a.max_seq_len}, batch "
              f"{a.batch_size}: medians ours {mo:.1f}, transformers {mt:.1f} examples/s, "
              f"ratio {mo / mt:.2f}")


if __name__ == "__main__":
    main()
