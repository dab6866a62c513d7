"""Reference for the trainer's speed: one ELECTRA discriminator training step in PyTorch +
transformers (bf16 autocast, SDPA attention, fused AdamW), as a researcher would hand-roll it.

    python3 scripts/bench/reference_rtd_step.py [--model base] [--batch-size 32] [--seq-len 512]

Prints the median step time and sequences per second over timed steps after warm-up, and one
JSON line (prefix `RESULT `) for scripts that collect figures. Random weights and random
corrupted inputs: the speed does not depend on them.
"""
import argparse
import json
import statistics
import time

import torch
from transformers import ElectraConfig, ElectraForPreTraining

PRESETS = {
    "small": dict(hidden_size=256, num_hidden_layers=12, num_attention_heads=4, intermediate_size=1024, embedding_size=128),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, embedding_size=768),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096, embedding_size=1024),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="base", choices=sorted(PRESETS))
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--vocab", type=int, default=30522)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = ElectraConfig(vocab_size=args.vocab, max_position_embeddings=max(512, args.seq_len), **PRESETS[args.model])
    cfg._attn_implementation = "sdpa"
    model = ElectraForPreTraining(cfg).to(device).train()
    decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n)]
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-4, betas=(0.9, 0.98), eps=1e-6, fused=device.type == "cuda",
    )
    g = torch.Generator(device="cpu").manual_seed(0)
    ids = torch.randint(1000, args.vocab, (args.batch_size, args.seq_len), generator=g).to(device)
    mask = torch.ones_like(ids)
    labels = (torch.rand(ids.shape, generator=g) < 0.1).float().to(device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(input_ids=ids, attention_mask=mask).logits
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    print(f"reference rtd step ({args.model}, batch {args.batch_size}, seq {args.seq_len}, {device}): "
          f"median {med*1000:.1f} ms, {args.batch_size/med:.0f} seq/s, peak {peak:.1f} GiB")
    print("RESULT " + json.dumps({"what": "reference_rtd_step", "model": args.model, "device": str(device),
                                  "batch_size": args.batch_size, "seq_len": args.seq_len,
                                  "median_step_s": med, "seq_per_s": args.batch_size / med, "peak_gib": peak}))


if __name__ == "__main__":
    main()
