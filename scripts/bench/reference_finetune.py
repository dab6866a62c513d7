"""The reference for `trainer finetune`'s speed: transformers' ElectraForSequenceClassification
fine-tuned on the same examples, model, batch and length, on the CPU in fp32.

The loop is the one `trainer finetune` runs: a seeded order of the training examples, batches
padded to their longest row, forward, cross-entropy, backward, clipping to 1.0, AdamW on a
linear schedule, zero_grad. It times whole epochs (collation included, no evaluation) and prints
one JSON line: {"examples": N, "epochs": E, "seconds": S, "train_examples_per_s": X}.

Used by scripts/bench/finetune.sh, which runs `trainer finetune` on the same files in the same call.
"""
import argparse
import json
import random
import time

import torch
from tokenizers import Tokenizer
from transformers import ElectraConfig, ElectraForSequenceClassification


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", required=True, help="an ElectraForSequenceClassification config.json")
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--train", required=True, help="JSONL with `text` and `label` (0/1)")
    p.add_argument("--max-seq-len", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    config = ElectraConfig.from_json_file(a.config)
    model = ElectraForSequenceClassification(config).train()
    tok = Tokenizer.from_file(a.tokenizer)
    tok.no_truncation()
    tok.no_padding()
    cls, sep, pad = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]"), tok.token_to_id("[PAD]")
    rows = [json.loads(line) for line in open(a.train, encoding="utf-8") if line.strip()]
    encoded = []
    for r, e in zip(rows, tok.encode_batch([r["text"] for r in rows], add_special_tokens=False)):
        ids = [cls] + e.ids[: a.max_seq_len - 2] + [sep]
        encoded.append((ids, int(r["label"])))
    steps = a.epochs * -(-len(encoded) // a.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.98), eps=1e-6,
                            weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / max(steps // 10, 1), max(0.0, (steps - s) / steps)))
    rng = random.Random(0)
    started = time.perf_counter()
    for _ in range(a.epochs):
        order = list(range(len(encoded)))
        rng.shuffle(order)
        for i in range(0, len(order), a.batch_size):
            batch = [encoded[j] for j in order[i:i + a.batch_size]]
            width = max(len(ids) for ids, _ in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for k, (row, _) in enumerate(batch):
                ids[k, : len(row)] = torch.tensor(row)
                mask[k, : len(row)] = 1
            labels = torch.tensor([y for _, y in batch])
            out = model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids),
                        labels=labels)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - started
    print(json.dumps({"examples": len(encoded), "epochs": a.epochs, "seconds": seconds,
                      "train_examples_per_s": len(encoded) * a.epochs / seconds}))


if __name__ == "__main__":
    main()
